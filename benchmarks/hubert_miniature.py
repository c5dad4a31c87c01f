"""HuBERT in miniature: does pre-training on MFCC targets give better units than the MFCC ones?

Generated speech with known phone timing (`example_audio.timed_utterance`: 8 phone-like classes of
60-200 ms), spoken by "speakers" that scale every formant (vocal tract length, 0.8-1.25x): the
frame-level MFCC clusters of one phone split by speaker, and context (the rest of the utterance)
tells the speaker. Held-out speech comes from other speakers. Steps, each a `speechtok` command:

1. `hubert-labels -e mfcc -k 100` on train: iteration-1 targets and the MFCC tokenizer;
2. PNMI of the MFCC units on held-out speech (`tokenize`, `eval purity` against the true phones);
3. `train hubert --config tiny` for about --train-minutes of CPU time (the step count is chosen
   from the speed of a short first run);
4. `hubert-labels -e RUN/final --layers L -k 100` on train, and PNMI of those units on held-out;
5. CTC: `train ctc` on the phone transcripts (a letter per phone, silences between words) of
   --ctc-minutes of the training speech, once from the pre-trained model (`--init RUN`) and once
   from a random model of the same architecture (`--config tiny`), the same steps and settings;
   `eval asr` CER of each on held-out speech (other speakers).

    python benchmarks/hubert_miniature.py                         # 40 min of speech, 25 min of training
    python benchmarks/hubert_miniature.py --speech-minutes 10 --train-minutes 3 --ctc-steps 100
    python benchmarks/hubert_miniature.py --work DIR              # DIR's finished runs are kept, not redone
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import machine

from speechtok.example_audio import frame_phones, make_lexicon, phone_transcript, timed_utterance

SR = 16000


def write_split(root: Path, name: str, count: int, scales: np.ndarray, rng: np.random.Generator,
                lexicon: list[list[str]] | None = None) -> None:
    """`name`.tsv (fairseq manifest), `name`_phones.tsv (uid<TAB>ph,ph,... at 100 Hz) and
    `name`.ltr (phone transcripts, fairseq letters)."""
    lines, phones, letters = [str(root / "audio")], [], []
    for i in range(count):
        uid = f"{name}{i:05d}"
        wave, spans = timed_utterance(rng, seconds=4.0, sample_rate=SR, formant_scale=float(rng.choice(scales)),
                                      lexicon=lexicon)
        sf.write(root / "audio" / f"{uid}.wav", wave, SR)
        lines.append(f"{uid}.wav\t{len(wave)}")
        phones.append(f"{uid}\t{','.join(frame_phones(spans, len(wave) / SR))}")
        letters.append(" ".join(phone_transcript(spans)))
    (root / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    (root / f"{name}.ltr").write_text("\n".join(letters) + "\n")
    (root / f"{name}_phones.tsv").write_text("\n".join(phones) + "\n")


def speechtok(*args, quiet: bool = True) -> str:
    command = [sys.executable, "-m", "speechtok.cli", *map(str, args), *(["-q"] if quiet else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return done.stdout


def pnmi(root: Path, tokenizer: Path, out: Path) -> float:
    speechtok("tokenize", root / "heldout.tsv", "-t", tokenizer, "-o", out)
    report = speechtok("eval", "purity", out, "--alignments", root / "heldout_phones.tsv", "--json", quiet=False)
    return json.loads(report)["pnmi"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech-minutes", type=float, default=40.0)
    parser.add_argument("--train-minutes", type=float, default=25.0)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=32.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lexicon", type=int, default=0,
                        help="Speak words of a random lexicon of this many words (0: phones drawn independently).")
    parser.add_argument("--ctc-minutes", type=float, default=10.0, help="Transcribed speech for CTC (of the train split).")
    parser.add_argument("--ctc-steps", type=int, default=1500)
    parser.add_argument("--ctc-lr", type=float, default=5e-4)
    parser.add_argument("--work", type=Path, default=None, help="Keep the data and runs here.")
    args = parser.parse_args()
    root = args.work or Path(tempfile.mkdtemp())
    (root / "audio").mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; work: {root}")
    rng = np.random.default_rng(0)
    speakers = rng.uniform(0.8, 1.25, 24)
    lexicon = make_lexicon(np.random.default_rng(7), args.lexicon) if args.lexicon else None
    write_split(root, "train", int(args.speech_minutes * 60 / 4), speakers[:20], rng, lexicon)
    write_split(root, "heldout", 75, speakers[20:], rng, lexicon)  # 5 min, unseen speakers

    speechtok("hubert-labels", "--train", root / "train.tsv", "-e", "mfcc", "-k", 100, "-o", root / "labels-it1")
    mfcc = pnmi(root, root / "labels-it1" / "tokenizer", root / "units-mfcc")
    print(f"MFCC K=100 units: PNMI {mfcc:.4f} on held-out speech")

    common = ["train", "hubert", "--train", root / "train.tsv", "--labels", root / "labels-it1", "--config", args.config,
              "--batch-seconds", args.batch_seconds, "--lr", args.lr, "--min-sample-seconds", 1.0]
    if not (root / "run" / "final").exists():
        probe = 30
        started = time.perf_counter()
        speechtok(*common, "-o", root / "probe", "--max-steps", probe, "--checkpoint-every", probe)
        per_step = (time.perf_counter() - started - 4.0) / probe  # less ~4 s of start-up and saving
        steps = max(probe, int(args.train_minutes * 60 / per_step))
        print(f"~{per_step:.3f} s per step -> {steps} steps for {args.train_minutes:g} min")
        started = time.perf_counter()
        speechtok(*common, "-o", root / "run", "--max-steps", steps, "--checkpoint-every", max(1, steps // 10))
        print(f"trained {steps} steps in {(time.perf_counter() - started) / 60:.1f} min")
    print_curve(root / "run", ["loss", "masked_accuracy"])

    speechtok("hubert-labels", "--train", root / "train.tsv", "-e", root / "run" / "final", "--layers", args.layer,
              "-k", 100, "-o", root / "labels-it2")
    hubert = pnmi(root, root / "labels-it2" / "tokenizer", root / "units-hubert")
    print(f"HuBERT ({args.config}, layer {args.layer}) K=100 units: PNMI {hubert:.4f} on held-out speech")
    print(f"difference: {hubert - mfcc:+.4f} ({'higher' if hubert > mfcc else 'not higher'} than MFCC)")

    # CTC on the transcripts of the first --ctc-minutes of train; valid: the next 25 utterances
    count = int(args.ctc_minutes * 60 / 4)
    for name, rows in [("ctc_train", slice(0, count)), ("ctc_valid", slice(count, count + 25))]:
        for suffix in ("tsv", "ltr"):
            lines = (root / f"train.{suffix}").read_text().splitlines()
            body = lines[1:] if suffix == "tsv" else lines
            (root / f"{name}.{suffix}").write_text("\n".join(lines[:1] * (suffix == "tsv") + body[rows]) + "\n")
    cers = {}
    for label, start in [("pre-trained", ["--init", root / "run"]), ("random init", ["--config", args.config])]:
        out = root / f"ctc-{label.split()[0]}"
        started = time.perf_counter()
        speechtok("train", "ctc", "--train", root / "ctc_train.tsv", "--valid", root / "ctc_valid.tsv", *start, "-o", out,
                  "--max-steps", args.ctc_steps, "--checkpoint-every", max(1, args.ctc_steps // 5), "--lr", args.ctc_lr,
                  "--freeze-steps", args.ctc_steps // 10, "--batch-seconds", args.batch_seconds, "--mask-time-prob", 0.4,
                  "--mask-channel-prob", 0.2)
        minutes = (time.perf_counter() - started) / 60
        report = json.loads(speechtok("eval", "asr", out / "final", root / "heldout.tsv", root / "heldout.ltr", "--json",
                                      quiet=False))
        cers[label] = report["cer"]
        print(f"CTC from the {label} model: {args.ctc_steps} steps in {minutes:.1f} min; held-out CER "
              f"{100 * report['cer']:.2f}%, WER {100 * report['wer']:.2f}%")
        print_curve(out, ["loss", "valid_cer"])
    better = cers["pre-trained"] < cers["random init"]
    print(f"CER difference: {100 * (cers['pre-trained'] - cers['random init']):+.2f} points "
          f"({'lower' if better else 'not lower'} from the pre-trained model)")


def print_curve(run: Path, columns: list[str]) -> None:
    """About ten lines of a run's metrics.csv (each column's last value at or before the step)."""
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    last: dict[str, str] = {}
    merged = []
    for r in rows:
        last.update({k: v for k, v in r.items() if v})
        if r["loss"] or r is rows[-1]:
            merged.append(dict(last))
    print(f"{run.name} curve (step, {', '.join(columns)}):")
    for r in merged[:: max(1, len(merged) // 10)] + merged[-1:]:
        print(f"    {int(r['step']):6d}  " + "  ".join(f"{float(r.get(c, 'nan')):.3f}" for c in columns))


if __name__ == "__main__":
    main()
