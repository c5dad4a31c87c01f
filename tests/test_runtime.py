"""runtime/windows.py: plan -> batches -> run -> regroup, checked against direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from speechtok.runtime import windows
from speechtok.runtime.device import batch_seconds, resolve_dtype


def test_windows_cover_every_step_once_with_bounded_context():
    for length, core, left, right in [(1000, 300, 50, 70), (299, 300, 10, 10), (600, 300, 0, 0), (1, 7, 3, 3)]:
        plan = windows.plan(0, length, core, left, right)
        cores = np.concatenate([np.arange(w.core_start, w.core_stop) for w in plan])
        assert np.array_equal(cores, np.arange(length))
        for w in plan:
            assert w.start == max(0, w.core_start - left) and w.stop == min(length, w.core_stop + right)


def test_chunks_drop_a_trailing_piece_too_short_for_a_frame():
    pieces = windows.chunks([1000, 250, 40], chunk=300, min_length=50)
    spans = [(w.item, w.start, w.stop) for w in pieces]
    assert spans == [(0, 0, 300), (0, 300, 600), (0, 600, 900), (0, 900, 1000), (1, 0, 250)]
    assert [(w.item, w.length) for w in windows.chunks([1000], None)] == [(0, 1000)]


@pytest.mark.parametrize("equal_lengths", [True, False])
def test_batches_respect_the_budget_and_the_length_rule(equal_lengths):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, 200)
    plan = [w for i, n in enumerate(lengths) for w in windows.plan(i, int(n), 20)]
    batches = windows.batches(plan, 100, equal_lengths=equal_lengths)
    assert sorted((w.item, w.start) for b in batches for w in b) == sorted((w.item, w.start) for w in plan)
    for batch in batches:
        longest = max(w.length for w in batch)
        assert len(batch) == 1 or longest * len(batch) <= 100
        if equal_lengths:
            assert len({w.length for w in batch}) == 1


def test_run_regroups_results_in_order_whatever_the_batching():
    """A moving sum with context computed in windows equals the whole-sequence computation."""
    rng = np.random.default_rng(1)
    sequences = [rng.normal(size=int(n)) for n in rng.integers(1, 400, 30)]
    reach = 3  # output t sums input t-3..t+3

    def whole(x):
        padded = np.pad(x, reach)
        return np.array([padded[t : t + 2 * reach + 1].sum() for t in range(len(x))])

    def forward(batch):
        out = []
        for w in batch:
            y = np.array([sequences[w.item][max(0, t - reach) : t + reach + 1].sum()
                          for t in range(w.core_start, w.core_stop)])
            out.append(y)
        return out

    plan = [w for i, s in enumerate(sequences) for w in windows.plan(i, len(s), 37, reach, reach)]
    for budget, equal in [(1, True), (200, True), (500, False)]:
        kept = windows.run(plan, len(sequences), forward, budget, equal_lengths=equal)
        for s, parts in zip(sequences, kept):
            assert np.allclose(np.concatenate(parts), whole(s))


def test_device_policy_and_dtype_names():
    assert batch_seconds(None, "cpu") == 0.0 and batch_seconds(None, "cuda") == 200.0
    assert batch_seconds(0, "cuda") == 0.0  # 0 is a choice, not "unset"
    assert resolve_dtype("bf16") == resolve_dtype("bfloat16")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")


def test_an_out_of_memory_batch_is_run_in_halves_with_the_same_results():
    """On CUDA a batch too large for the device raises OutOfMemoryError: injected here, on CPU."""
    import torch

    plan = [w for i in range(12) for w in windows.plan(i, 10, 10)]
    sizes = []

    def forward(batch):
        sizes.append(len(batch))
        if len(batch) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return [w.item * 100 + w.core_start for w in batch]

    kept = windows.run(plan, 12, forward, 10**6, equal_lengths=True)
    assert kept == [[i * 100] for i in range(12)]
    assert sizes == [12, 6, 3, 3, 3, 3]  # halved (12 -> 6 -> 3), then every later batch kept at 3

    def always(batch):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    with pytest.raises(torch.OutOfMemoryError):  # one window that does not fit is the caller's error
        windows.run(plan[:1], 1, always, 10**6, equal_lengths=True)


def test_tokens_are_unchanged_when_the_encoder_runs_out_of_memory(monkeypatch, speech_files):
    import torch

    from speechtok import KMeans, MFCCEncoder, Tokenizer

    encoder = MFCCEncoder()
    frames = torch.cat([f["mfcc"] for f in encoder.encode_batch(speech_files)])
    tok = Tokenizer(encoder, {"mfcc": KMeans.fit(frames, 8, seed=0)}, batch_seconds=1000)
    expected = tok.encode_batch(speech_files)
    real = MFCCEncoder.forward_batch

    def small_memory(self, waves):
        if len(waves) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(self, waves)

    monkeypatch.setattr(MFCCEncoder, "forward_batch", small_memory)
    assert tok.encode_batch(speech_files) == expected
