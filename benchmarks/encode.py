"""Semantic tokens of one layer: speechtok vs the method SpeechBrain's DiscreteSSL uses.

SpeechBrain's `DiscreteSSL.encode` runs the whole SSL model with all hidden states, takes
hidden_states[layer], and calls sklearn's `predict` on the CPU. speechtok runs only the blocks up to
the layer and assigns with a torch matmul. Same random WavLM-large-shaped model (24 blocks,
1024 dims), same k-means (sklearn MiniBatchKMeans, K=1000, imported by speechtok from its joblib
file), same audio, same run.

    python benchmarks/encode.py            # layer 7, 4 x 10 s, as the issue specifies
    python benchmarks/encode.py --quick    # a smaller model, for a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import joblib
import numpy as np
import torch
import torch.nn.functional as F
from common import interleaved_median_times, machine, speech, wavlm_model
from sklearn.cluster import MiniBatchKMeans
from transformers import AutoModel

import speechtok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="12 blocks of 256 dims instead of WavLM-large")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    config = wavlm_model(tmp / "model", args.quick)
    if not 0 <= args.layer <= config.num_hidden_layers:
        parser.error(f"--layer must be 0..{config.num_hidden_layers} (the model's blocks)")
    layer = args.layer
    waves = speech(args.seconds, args.files)
    audio_seconds = sum(len(w) for w in waves) / 16000

    # --- the DiscreteSSL method: full forward, all hidden states, sklearn predict ---------------
    full = AutoModel.from_pretrained(tmp / "model").eval()
    batch = torch.stack([F.layer_norm(torch.from_numpy(w), w.shape) for w in waves])

    def full_hidden():
        with torch.inference_mode():
            return full(batch, output_hidden_states=True).hidden_states[layer]

    feats = full_hidden()
    km = MiniBatchKMeans(n_clusters=1000, n_init=1, batch_size=10000, random_state=0)
    km.fit(feats.flatten(end_dim=-2).numpy())
    joblib.dump(km, tmp / f"LibriSpeech_wavlm_k1000_L{layer}.pt")

    def reference():
        hidden = full_hidden()
        return km.predict(hidden.flatten(end_dim=-2).cpu().numpy()).reshape(len(waves), -1)

    # --- speechtok: blocks 1..layer only, torch assignment ----------------------------------------
    encoder = speechtok.SSLEncoder.from_pretrained(str(tmp / "model"), layers=[layer])
    tok = speechtok.Tokenizer(encoder, {f"L{layer}": speechtok.KMeans.load(tmp / f"LibriSpeech_wavlm_k1000_L{layer}.pt")})

    times, results = interleaved_median_times(
        {"reference": reference, "speechtok": lambda: tok.encode_batch(waves, sample_rate=16000)}, args.repeats)
    (ref_time, ref_tokens), (ours_time, units) = [(times[n], results[n]) for n in ("reference", "speechtok")]
    ours_tokens = np.stack([u.stream(f"L{layer}") for u in units])

    agree = float((ours_tokens == ref_tokens).mean())
    # Where the two differ, how far apart (in float64, on the reference features) are the
    # squared distances to the two chosen centroids, relative to the frame's squared norm?
    # A gap near fp32 precision is a tie (K=1000 over ~2000 frames gives duplicate centroids).
    x = feats.flatten(end_dim=-2).double()
    c = torch.from_numpy(km.cluster_centers_).double()
    diff = np.flatnonzero(ours_tokens.reshape(-1) != ref_tokens.reshape(-1))
    d_ours = ((x[diff] - c[ours_tokens.reshape(-1)[diff]]) ** 2).sum(1)
    d_ref = ((x[diff] - c[ref_tokens.reshape(-1)[diff]]) ** 2).sum(1)
    gap = float(((d_ours - d_ref).abs() / (x[diff] ** 2).sum(1)).max()) if len(diff) else 0.0
    print(f"machine: {machine()}")
    print(f"model: WavLM {config.num_hidden_layers} blocks x {config.hidden_size}, layer {layer}, K=1000; "
          f"audio {args.files} x {args.seconds:g} s")
    print(f"DiscreteSSL method (full forward + sklearn predict): {ref_time:.2f} s, {audio_seconds / ref_time:.2f}x realtime")
    print(f"speechtok (truncated + torch argmin):               {ours_time:.2f} s, {audio_seconds / ours_time:.2f}x realtime")
    print(f"speed ratio: {ref_time / ours_time:.2f}x; tokens identical: {agree * 100:.2f}% of {ref_tokens.size} frames"
          + (f" (the {len(diff)} others are near-ties: distances to the two centroids differ by at most "
             f"{gap:.1e} of the frame's squared norm)" if len(diff) else ""))


if __name__ == "__main__":
    main()
