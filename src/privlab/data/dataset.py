"""The in-memory dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from privlab._validation import check_int
from privlab.errors import InvalidParameterError


@dataclass(frozen=True, eq=False)
class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Features ``x`` (N, ...) and integer labels ``y`` (N,) held as tensors.

    Indexing returns ``(x[i], y[i])``; :meth:`subset` takes rows by index or boolean mask.
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise InvalidParameterError(
                f"The 'y' parameter of ArrayDataset must have as many rows as x ({self.x.shape[0]}). "
                f"Got {self.y.shape[0]} instead."
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.y.max().item()) + 1

    def subset(self, index: torch.Tensor | list[int]) -> ArrayDataset:
        """Rows selected by an index tensor/list or a boolean mask of length N."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool and idx.shape[0] != len(self):
            raise InvalidParameterError(
                f"The 'index' parameter of ArrayDataset.subset must be a mask of length {len(self)}. "
                f"Got length {idx.shape[0]} instead."
            )
        return ArrayDataset(self.x[idx], self.y[idx], self.name, self.classes)

    def head(self, n: int) -> ArrayDataset:
        """The first ``n`` rows."""
        check_int(n, "n", "ArrayDataset.head", low=0)
        return ArrayDataset(self.x[:n], self.y[:n], self.name, self.classes)
