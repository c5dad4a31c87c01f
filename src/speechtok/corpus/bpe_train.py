"""`speechtok bpe train`: a unit BPE learned on one stream of a tokenized corpus."""

from __future__ import annotations

import os

from ..bpe import UnitBPE
from .manifest import TokenizedCorpus


def train_bpe(directory: str | os.PathLike, vocab_size: int, stream: str | None = None) -> tuple[UnitBPE, str]:
    """A BPE over one stream's stored units (deduplicated if the corpus was), and a line saying how
    much it shortens them."""
    corpus = TokenizedCorpus.open(directory)
    stream = corpus.stream(stream)
    k = corpus.vocab_size(stream)
    sequences = corpus.sequences(stream)
    bpe = UnitBPE.train(sequences, k, vocab_size, stream)
    units = sum(len(c) for c in sequences)
    pieces = sum(len(bpe.encode(c)) for c in sequences)
    return bpe, (f"{bpe.vocab_size} pieces over {stream} (K={k}); the corpus's {units} units are "
                 f"{pieces} pieces ({units / max(pieces, 1):.2f} units per piece)")
