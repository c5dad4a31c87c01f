"""Quickstart on audio that needs no download: HuBERT iteration-1 units from MFCC features.

1. writes 8 short utterances (espeak-ng speech, or a synthetic stand-in) to example_out/audio/;
2. computes fairseq's HuBERT MFCC features (39 dims, 100 Hz) and fits a K=100 k-means on them;
3. saves the tokenizer to example_out/quickstart_tokenizer/ (tokenizer.json + safetensors);
4. loads it back with speechtok.load and prints each file's deduplicated units.

Then try the command line on the same files:
    speechtok encode example_out/audio/*.wav -t example_out/quickstart_tokenizer --dedup
    speechtok tokenize example_out/audio -t example_out/quickstart_tokenizer -o example_out/quickstart_units
"""

from __future__ import annotations

from pathlib import Path

import torch

import speechtok
from speechtok.example_audio import write_example_audio

out = Path("example_out")
files = write_example_audio(out / "audio")
print(f"wrote {len(files)} utterances to {out / 'audio'}")

encoder = speechtok.MFCCEncoder()
frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(files)])
kmeans = speechtok.KMeans.fit(frames, k=100, seed=0)
print(f"fitted {kmeans} on {len(frames)} MFCC frames (inertia {kmeans.info['inertia']:.4g})")

speechtok.Tokenizer(encoder, {"mfcc": kmeans}).save_pretrained(out / "quickstart_tokenizer")
tok = speechtok.load(out / "quickstart_tokenizer")
print(f"saved and reloaded {tok}\n")

for path, units in zip(files, tok.encode_batch(files)):
    deduped = units.dedup()
    print(f"{path.name}: {len(units)} frames -> {len(deduped)} units: {deduped.to_text()[:70]}...")
