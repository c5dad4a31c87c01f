"""A SUPERB-style downstream model: a frozen SSL encoder, a learnable layer mix, a small head.

    python examples/downstream.py                               # tiny random model, generated speech
    python examples/downstream.py --model microsoft/wavlm-base-plus --layers 0-12

The task here is a toy one that needs no labels from anywhere: tell fast speech from slow speech
(the example audio is spoken at different rates). Swap in your own files and labels.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import speechtok
from speechtok.example_audio import write_example_audio


def tiny_model(directory: Path) -> str:
    """A random WavLM-base-shaped model, 4 blocks x 64, saved like a hub checkpoint."""
    from transformers import AutoModel, Wav2Vec2FeatureExtractor, WavLMConfig

    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)
    AutoModel.from_config(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(directory)
    return str(directory)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id, directory or original checkpoint (default: a tiny random model)")
    parser.add_argument("--layers", default="0-4", help="layers to mix, e.g. 0-12 or 3,6,9")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    first, _, last = args.layers.partition("-")
    layers = list(range(int(first), int(last) + 1)) if last else [int(n) for n in args.layers.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(Path(tmp) / "model")
        files = write_example_audio(Path(tmp) / "audio", count=12)  # spoken at 140..190 words/min
        labels = torch.tensor([int(i % 6 >= 3) for i in range(len(files))])  # 0: slower, 1: faster

        encoder = speechtok.SSLEncoder.from_pretrained(model, layers=layers)
        features = encoder.encode_batch(files)  # frozen: computed once, as SUPERB does
        featurizer = speechtok.Featurizer(layers, layer_norm=True)
        head = torch.nn.Linear(features[0][f"L{layers[0]}"].shape[-1], 2)
        optimizer = torch.optim.Adam([*featurizer.parameters(), *head.parameters()], lr=1e-2)

        for step in range(args.steps):
            x, mask = featurizer.pad(features)  # [B, T, D], [B, T]
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            loss = torch.nn.functional.cross_entropy(head(pooled), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 10 == 0 or step == args.steps - 1:
                print(f"step {step:3d}  loss {loss.item():.4f}")
        weights = featurizer.layer_weights().detach()
        print("layer weights: " + ", ".join(f"L{n} {w:.3f}" for n, w in zip(layers, weights.tolist())))


if __name__ == "__main__":
    main()
