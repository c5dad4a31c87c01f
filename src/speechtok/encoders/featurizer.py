"""s3prl's SUPERB layer featurizer: a learnable softmax-weighted sum of SSL layers.

The weights start at zero (so the softmax gives every layer the same weight) and are learned by
the downstream model. With `layer_norm=True` each layer is first normalised over its feature
dimension (no affine parameters), as s3prl's `normalize` option does. One selected layer is
passed through unchanged, weights and normalisation included, as s3prl does.

Layer L is the un-normalised output of the last block (speechtok's layer rule), but s3prl's last
hidden state of a stable-layer-norm ("large") model is the normalised one. To sum exactly s3prl's
hidden states, encode with `SSLEncoder(..., last_hidden_state=True)` and name that stream in place
of layer L: `Featurizer([*range(L), "last_hidden_state"])`.

Every step acts on one frame at a time, so padded frames never change real ones; `pad` turns the
per-utterance output of `SSLEncoder.encode_batch` into a padded batch and its mask.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnknownNameError


class Featurizer(nn.Module):
    """Weighted sum of the layers `layers` (SSL layer numbers; 0 = before the first block; a string
    is a stream name taken as is, e.g. `"last_hidden_state"`).

    >>> enc = SSLEncoder.from_pretrained("microsoft/wavlm-base-plus", layers=range(13))
    >>> feat = Featurizer(range(13), layer_norm=True)
    >>> x, mask = feat.pad(enc.encode_batch(files))        # [B, T, D], [B, T]
    """

    def __init__(self, layers: int | str | Sequence[int | str], layer_norm: bool = False):
        super().__init__()
        items = [layers] if isinstance(layers, (int, str)) else list(layers)
        self.layers = [n if isinstance(n, str) else int(n) for n in items]
        if not self.layers or len(set(self.streams)) != len(self.layers):
            raise InputError(f"layers must be distinct layer numbers or stream names, got {self.layers}")
        self.layer_norm = bool(layer_norm)
        self.weights = nn.Parameter(torch.zeros(len(self.layers)))

    @property
    def streams(self) -> list[str]:
        return [n if isinstance(n, str) else f"L{n}" for n in self.layers]

    def layer_weights(self) -> torch.Tensor:
        """The softmax weights, one per layer, in `layers` order."""
        return F.softmax(self.weights, dim=-1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{`L<n>`: [..., T, D]} (one utterance or a padded batch) -> [..., T, D]."""
        missing = [s for s in self.streams if s not in features]
        if missing:
            raise UnknownNameError(f"features lack {', '.join(missing)}; they have {', '.join(features)} "
                           "(encode with every layer the featurizer sums)")
        # Encoder outputs are made under inference_mode; autograd may not save such tensors.
        hidden = [features[s].clone() if features[s].is_inference() else features[s] for s in self.streams]
        if len(hidden) == 1:
            return hidden[0]
        stacked = torch.stack(hidden)  # [L, ..., T, D]
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.layer_weights().to(stacked.dtype).view(-1, *([1] * (stacked.dim() - 1)))
        return (weights * stacked).sum(dim=0)

    def pad(self, batch: Sequence[Mapping[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-utterance features ({`L<n>`: [T_i, D]}, as `SSLEncoder.encode_batch` gives them) ->
        the weighted sum as a zero-padded [B, T_max, D] and a [B, T_max] mask of real frames."""
        outputs = [self(f) for f in batch]
        lengths = torch.tensor([len(o) for o in outputs])
        padded = nn.utils.rnn.pad_sequence(outputs, batch_first=True)
        mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
        return padded, mask
