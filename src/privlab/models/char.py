"""A small next-character model for the federated Shakespeare task (:mod:`privlab.data.speakers`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from privlab._validation import check_int


class CharMLP(nn.Module):
    """``seq_len`` character ids -> embedding (``embed`` per char) -> flatten -> MLP -> next-char logits.

    LEAF's reference model is a 2-layer LSTM (Caldas et al. 2018); a window MLP is the CPU-cheap
    stand-in with the same input and output: a (B, seq_len) int64 batch in, (B, vocab) logits out.
    """

    def __init__(self, vocab: int = 96, seq_len: int = 40, embed: int = 8, hidden: Sequence[int] = (256,)) -> None:
        super().__init__()
        for name, v in (("vocab", vocab), ("seq_len", seq_len), ("embed", embed)):
            check_int(v, name, "CharMLP", low=1)
        self.embed = nn.Embedding(vocab, embed)
        layers: list[nn.Module] = [nn.Flatten()]
        width = seq_len * embed
        for h in hidden:
            check_int(h, "hidden", "CharMLP", low=1)
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, vocab))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(x))  # type: ignore[no-any-return]
