"""Per-example signals of one or more models: logits, loss, true-label probability, scaled logit.

For logits ``z`` (C,) and label ``y``:

* loss ``l = -log softmax(z)_y = logsumexp(z) - z_y`` (Yeom et al. 2018);
* probability ``p = softmax(z)_y`` (RMIA's Pr(x|theta), Zarifzadeh et al. 2024);
* scaled logit confidence ``phi = log(p / (1 - p)) = z_y - logsumexp_{c != y} z_c`` (Carlini et al.
  2022, Sec. IV-B), computed in this form because ``log(p) - log(1-p)`` loses all precision when
  ``p`` rounds to 1.

With query augmentations (LiRA, Sec. IV-B "query augmentations"), each signal is computed per view
and averaged over views; ``logits`` then holds the mean logits over views.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from privlab.data import ArrayDataset
from privlab.errors import CorruptArtifactError, InvalidParameterError

SCHEMA = "privlab.attacks.signals"
VERSION = 1


def _shift(dy: int, dx: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def f(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), zero fill
        out = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        if dy:
            out[..., (slice(0, dy) if dy > 0 else slice(dy, None)), :] = 0
        if dx:
            out[..., (slice(0, dx) if dx > 0 else slice(dx, None))] = 0
        return out

    return f


AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: torch.flip(x, dims=(-1,)),
    "shift_up": _shift(-1, 0),
    "shift_down": _shift(1, 0),
    "shift_left": _shift(0, -1),
    "shift_right": _shift(0, 1),
}


@dataclass(frozen=True, eq=False)
class Signals:
    """Signals of K models on N examples. Shapes: logits (K, N, C); labels (N,); the rest (K, N)."""

    logits: np.ndarray
    labels: np.ndarray
    loss: np.ndarray
    prob: np.ndarray
    confidence: np.ndarray
    n_views: int = 1

    @classmethod
    def from_logits(cls, logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> Signals:
        """Signals from logits (K, N, C), or (K, N, V, C) for V query views (averaged), and labels (N,)."""
        z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if z.dim() == 3:
            z = z.unsqueeze(2)
        if z.dim() != 4 or z.shape[1] != y.shape[0] or y.dim() != 1:
            raise InvalidParameterError(
                "The 'logits' parameter of Signals.from_logits must have shape (K, N, C) or (K, N, V, C) with "
                f"N = len(labels) = {y.shape[0]}. Got {tuple(z.shape)} instead."
            )
        K, N, V, C = z.shape
        yy = y.view(1, N, 1, 1).expand(K, N, V, 1)
        z_y = z.gather(-1, yy).squeeze(-1)  # (K, N, V)
        lse = torch.logsumexp(z, dim=-1)
        others = torch.logsumexp(z.scatter(-1, yy, float("-inf")), dim=-1)
        return cls(
            logits=z.mean(2).float().numpy(),
            labels=y.numpy(),
            loss=(lse - z_y).mean(-1).numpy(),
            prob=torch.exp(z_y - lse).mean(-1).numpy(),
            confidence=(z_y - others).mean(-1).numpy(),
            n_views=V,
        )

    @property
    def n_models(self) -> int:
        return int(self.loss.shape[0])

    @property
    def n_examples(self) -> int:
        return int(self.loss.shape[1])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the signals to an ``.npz`` file (arrays only, no pickle; ``schema``/``version`` inside)."""
        np.savez(
            path,
            schema=np.array(SCHEMA),
            version=np.array(VERSION),
            logits=self.logits,
            labels=self.labels,
            loss=self.loss,
            prob=self.prob,
            confidence=self.confidence,
            n_views=np.array(self.n_views),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Signals:
        """Read signals written by :meth:`save`; anything else raises :class:`CorruptArtifactError`."""
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["schema"]) != SCHEMA or int(f["version"]) > VERSION:
                    raise CorruptArtifactError(f"{path} is not a {SCHEMA} file of version <= {VERSION}.")
                return cls(f["logits"], f["labels"], f["loss"], f["prob"], f["confidence"], int(f["n_views"]))
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptArtifactError(f"Cannot read signals from {path}: {exc}") from exc

    def select(self, models: Sequence[int] | np.ndarray | slice) -> Signals:
        """The signals of a subset of the models (rows)."""
        idx = models if isinstance(models, slice) else np.asarray(models)
        return Signals(
            self.logits[idx], self.labels, self.loss[idx], self.prob[idx], self.confidence[idx], self.n_views
        )


@dataclass(frozen=True, eq=False)
class PopulationSignals:
    """Signals on population points z that no model trained on (RMIA): of the target (1, M) and references (K, M)."""

    target: Signals
    reference: Signals


def _views(augment: bool | Sequence[str]) -> list[str]:
    if augment is True:
        return list(AUGMENTATIONS)
    if augment is False:
        return ["identity"]
    names = list(augment)
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad or not names:
        raise InvalidParameterError(
            f"The 'augment' parameter of compute_signals must be a bool or names from {list(AUGMENTATIONS)}. "
            f"Got {augment!r} instead."
        )
    return names


@torch.no_grad()
def compute_signals(
    model_or_models: nn.Module | Sequence[nn.Module] | object,
    dataset: ArrayDataset,
    augment: bool | Sequence[str] = False,
    batch_size: int = 4096,
) -> Signals:
    """Signals of one model (K = 1), a list of models, or an :class:`~privlab.train.EnsembleResult` (vectorised).

    ``augment=True`` averages over all :data:`AUGMENTATIONS` (flip and 1-pixel shifts of images);
    a list of names selects views.
    """
    views = _views(augment)
    if views != ["identity"] and dataset.x.dim() < 3:
        raise InvalidParameterError(
            "The 'augment' parameter of compute_signals flips and shifts images along their last two axes "
            f"(..., H, W), so it needs image-shaped inputs. Got inputs of shape {tuple(dataset.x.shape)} "
            "(flat rows would be shifted across examples); use augment=False or reshape the data."
        )
    state = getattr(model_or_models, "state", None)
    if isinstance(state, dict):  # an EnsembleResult: one vmapped pass over its stacked weights
        factory = getattr(model_or_models, "model_factory")  # noqa: B009
        base = factory().to("meta").eval()
        stacked = dict(state)

        def forward(xb: torch.Tensor) -> torch.Tensor:
            f = vmap(lambda p, x: functional_call(base, p, (x,)), in_dims=(0, None))
            return f(stacked, xb)  # (K, B, C)
    else:
        models = [model_or_models] if isinstance(model_or_models, nn.Module) else list(model_or_models)  # type: ignore[call-overload]
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise InvalidParameterError(
                "The 'model_or_models' parameter of compute_signals must be an nn.Module, a list of them or an "
                f"EnsembleResult. Got {type(model_or_models).__name__} instead."
            )
        shapes = {tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in models}
        if len(models) > 1 and len(shapes) == 1 and len({type(m) for m in models}) == 1:
            params, buffers = stack_module_state(models)  # type: ignore[arg-type]
            meta = copy.deepcopy(models[0]).to("meta").eval()

            def forward(xb: torch.Tensor) -> torch.Tensor:
                f = vmap(lambda p, b, x: functional_call(meta, (p, b), (x,)), in_dims=(0, 0, None))
                return f(params, buffers, xb)  # (K, B, C)
        else:
            for m in models:
                m.eval()

            def forward(xb: torch.Tensor) -> torch.Tensor:
                return torch.stack([m(xb) for m in models])  # (K, B, C)

    chunks = []
    for start in range(0, len(dataset), batch_size):
        xb = dataset.x[start : start + batch_size]
        chunks.append(torch.stack([forward(AUGMENTATIONS[v](xb)) for v in views], dim=2))  # (K, B, V, C)
    return Signals.from_logits(torch.cat(chunks, dim=1), dataset.y)
