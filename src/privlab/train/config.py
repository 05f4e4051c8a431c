"""Training configuration for reference (shadow) models: a frozen dataclass with a stable hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from privlab._validation import check_choice, check_int, check_real
from privlab.errors import ConfigError, InvalidParameterError

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """How one reference model is trained (non-private SGD or Adam, full cross-entropy).

    ``epochs`` counts passes over the model's own training set: a model with ``n`` examples takes
    ``ceil(epochs * n / batch_size)`` steps of exactly ``batch_size`` examples, read from a stream of
    fresh random permutations of its ``n`` examples (see :func:`privlab.train.sampling.index_stream`).
    ``seed`` fixes the initialisation, the order of examples and (for DP-SGD-style training) the
    noise; nothing else is random.

    ``max_grad_norm > 0`` trains like DP-SGD (Abadi et al. 2016), for reference models that must
    mimic a DP target: each example's gradient is clipped to that L2 norm (flat, over all trainable
    parameters), and ``N(0, (noise_multiplier * max_grad_norm)^2)`` noise per coordinate is
    added to the sum before dividing by the batch size (:mod:`privlab.dp.mechanism`). Batches are
    the fixed-size ones above, not Poisson samples, and nothing is accounted: these models carry no
    privacy guarantee of their own.
    """

    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 0.0  # 0: no clipping (ordinary training)
    noise_multiplier: float = 0.0

    @property
    def private(self) -> bool:
        """Per-example clipping (and noise) on: DP-SGD-style training."""
        return self.max_grad_norm > 0

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        check_real(self.epochs, "epochs", owner, low=0.0, low_open=True)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_real(self.lr, "lr", owner, low=0.0)
        check_choice(self.optimizer, "optimizer", owner, OPTIMIZERS)
        check_real(self.momentum, "momentum", owner, low=0.0, high=1.0, high_open=True)
        check_real(self.weight_decay, "weight_decay", owner, low=0.0)
        check_int(self.seed, "seed", owner, low=0)
        for b in self.adam_betas:
            check_real(b, "adam_betas", owner, low=0.0, high=1.0, high_open=True)
        check_real(self.adam_eps, "adam_eps", owner, low=0.0, low_open=True)
        check_real(self.max_grad_norm, "max_grad_norm", owner, low=0.0)
        check_real(self.noise_multiplier, "noise_multiplier", owner, low=0.0)
        if self.noise_multiplier > 0 and self.max_grad_norm == 0:
            raise InvalidParameterError(
                "The 'noise_multiplier' parameter of TrainConfig needs clipping: noise is scaled by "
                f"max_grad_norm, which must be > 0. Got max_grad_norm={self.max_grad_norm} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"TrainConfig got unknown keys {unknown}; expected a subset of {sorted(known)}.")
        d = dict(data)
        if "adam_betas" in d:
            d["adam_betas"] = tuple(d["adam_betas"])
        return cls(**d)

    def hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of :meth:`to_dict`."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
