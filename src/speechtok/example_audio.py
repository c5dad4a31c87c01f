"""Speech for examples, tests and benchmarks that needs no download.

espeak-ng (Debian package `espeak-ng`) gives real synthetic speech; without it, a vowel-like
signal (a pitch-varying pulse train through three formant resonances, with pauses) stands in.
`timed_utterance` makes speech-like audio whose phone of every instant is known (for unit
quality: PNMI, purity).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech tokens are learned from audio.",
    "Hello world.",
    "A journey of a thousand miles begins with a single step, they say.",
    "Seven silver swans swam silently seaward.",
    "Numbers like one, two and three.",
    "She sells sea shells by the sea shore.",
    "Discrete units make speech look like text to a language model.",
]


def espeak(text: str, path: Path, speed: int = 160, voice: str = "en") -> bool:
    """Speak `text` into the wav file `path` (22.05 kHz); False when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return False
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return True


# Phone-like classes: formant-like partials (Hz); None: a fricative (high-passed noise); (): silence.
PHONES = {"aa": (700, 1200, 2600), "iy": (300, 2300, 3000), "uw": (320, 800, 2300), "eh": (550, 1800, 2500),
          "s": None, "m": (250, 1000, 2200), "sil": (), "ao": (600, 900, 2500)}


def phone_segment(name: str, n: int, rng: np.random.Generator, sample_rate: int = 16000,
                  formant_scale: float = 1.0) -> np.ndarray:
    """`n` samples of the phone-like class `name` (a random pitch modulating its partials, at
    `formant_scale` times the class's frequencies: a speaker's vocal tract length)."""
    t = np.arange(n) / sample_rate
    if PHONES[name] is None:
        return 0.1 * np.diff(rng.standard_normal(n), prepend=0)
    if not PHONES[name]:
        return 0.002 * rng.standard_normal(n)
    f0 = rng.uniform(100, 140)
    x = sum(np.sin(2 * np.pi * f * formant_scale * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate(PHONES[name]))
    return 0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * f0 * t)) + 0.003 * rng.standard_normal(n)


def make_lexicon(rng: np.random.Generator, words: int = 40, shortest: int = 3, longest: int = 5) -> list[list[str]]:
    """`words` random "words" of `shortest`-`longest` non-silent phones: a language whose phone
    sequences are predictable from context (i.i.d. phones are not)."""
    sounds = [p for p in PHONES if p != "sil"]
    return [[sounds[i] for i in rng.integers(len(sounds), size=int(rng.integers(shortest, longest + 1)))]
            for _ in range(words)]


def timed_utterance(rng: np.random.Generator, count: int | None = None, seconds: float | None = None,
                    sample_rate: int = 16000, formant_scale: float = 1.0,
                    lexicon: list[list[str]] | None = None) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Random phone-like segments of 60-200 ms: `count` of them, or until `seconds` are reached,
    spoken with `formant_scale` (see `phone_segment`); phones drawn independently, or, with a
    `lexicon`, words of it with a silence after each. Returns the wave and its (start s, end s,
    phone) spans."""
    names, pieces, spans, start = list(PHONES), [], [], 0
    queue: list[str] = []
    while (len(spans) < count) if count is not None else (start < (seconds or 0) * sample_rate):
        if lexicon is not None:
            if not queue:
                queue = [*lexicon[rng.integers(len(lexicon))], "sil"]
            name = queue.pop(0)
        else:
            name = names[rng.integers(len(names))]
        n = int(rng.integers(int(0.06 * sample_rate), int(0.2 * sample_rate)))
        pieces.append(phone_segment(name, n, rng, sample_rate, formant_scale))
        spans.append((start / sample_rate, (start + n) / sample_rate, name))
        start += n
    return np.concatenate(pieces).astype(np.float32), spans


def frame_phones(spans: list[tuple[float, float, str]], seconds: float, rate: float = 100.0) -> list[str]:
    """The phone at the centre of every frame at `rate` Hz (fairseq's phone labels are 100 Hz)."""
    centres = (np.arange(int(seconds * rate)) + 0.5) / rate
    return [next(name for a, b, name in spans if a <= c < b) for c in centres]


# how each phone-like class is written in a transcript (silences end words)
LETTERS = {"aa": "A", "iy": "I", "uw": "U", "eh": "E", "s": "S", "m": "M", "ao": "O", "sil": "|"}


def phone_transcript(spans: list[tuple[float, float, str]]) -> list[str]:
    """The letters a `timed_utterance` spells, as a fairseq `.ltr` line's symbols: a letter per
    phone, a silence as the end of a word (`|`), and a `|` at the end."""
    letters = [LETTERS[name] for _, _, name in spans]
    out: list[str] = []
    for letter in letters:
        if letter == "|" and (not out or out[-1] == "|"):
            continue
        out.append(letter)
    if out and out[-1] != "|":
        out.append("|")
    return out


def synthetic_speech(seconds: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    pulses = (np.diff(np.floor(np.cumsum(f0) / sample_rate), prepend=0) > 0).astype(float)
    out = np.zeros(n)
    ring = t[:400]
    for formant in (rng.uniform(300, 800), rng.uniform(900, 2200), rng.uniform(2400, 3200)):
        out += np.convolve(pulses, np.exp(-ring * 300) * np.sin(2 * np.pi * formant * ring), "same")
    out *= np.sin(2 * np.pi * rng.uniform(1, 3) * t) > -0.3  # pauses
    out += 0.003 * rng.standard_normal(n)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def write_example_audio(directory: str | Path, count: int = len(SENTENCES)) -> list[Path]:
    """`count` short utterances as wav files in `directory` (espeak-ng speech when available)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = directory / f"utt{i:02d}.wav"
        if not espeak(SENTENCES[i % len(SENTENCES)], path, speed=140 + 10 * (i % 6)):
            sf.write(path, synthetic_speech(1.0 + 0.4 * (i % 6), i), 16000)
        files.append(path)
    return files


if __name__ == "__main__":  # python -m speechtok.example_audio DIR [COUNT]
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m speechtok.example_audio DIR [COUNT]  (writes COUNT short utterances, default 8)")
    written = write_example_audio(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else len(SENTENCES))
    print(f"wrote {len(written)} utterances to {sys.argv[1]}")
