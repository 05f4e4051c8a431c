"""What an audit re-runs: one DP-SGD training described once, taken by every DP-SGD audit.

:class:`AuditSpec` states what was trained (Poisson sampling rate, steps, clipping norm and mode,
noise, learning rate, accountant, model factory, data). Every audit entry point
(:func:`~privlab.audit.dp_training.audit_dp_training`,
:func:`~privlab.audit.blackbox.audit_dp_training_blackbox`,
:func:`~privlab.audit.multi_run_training.audit_dp_training_multi_run`,
:func:`~privlab.audit.optimizer_canaries.audit_dp_optimizer`) takes one and trains through
:meth:`AuditSpec.private_training`, i.e. ``make_private`` and its :class:`~privlab.dp.DPOptimizer`:
the audit of a target is an audit of the mechanism the target was trained with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting import ACCOUNTANTS, resolve_noise_multiplier
from privlab.data.dataset import ArrayDataset
from privlab.dp.facade import CLIPPING, PrivateTraining, make_private

FAULTS = (None, "no_noise", "no_clipping")


@dataclasses.dataclass(frozen=True, eq=False)
class AuditSpec:
    """One DP-SGD training to audit: plain SGD (no momentum) with Poisson batches of rate ``sample_rate``.

    Give exactly one of ``noise_multiplier`` or ``target_epsilon`` (then the noise is calibrated by
    ``make_private`` for the audit's own data size). ``seed`` seeds the model initialisation and the
    training's sampling and noise; the audit's own draws (canaries) use a stream apart from it.
    """

    model_factory: Callable[[], nn.Module]
    train: ArrayDataset
    sample_rate: float
    steps: int
    delta: float = 1e-5
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    clipping: str = "flat"
    lr: float = 0.5
    accountant: str = "pld"
    seed: int = 0
    test: ArrayDataset | None = None

    def __post_init__(self) -> None:
        owner = "AuditSpec"
        check_real(self.sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
        check_int(self.steps, "steps", owner, low=1)
        check_real(self.delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
        check_real(self.max_grad_norm, "max_grad_norm", owner, low=0.0, low_open=True)
        check_choice(self.clipping, "clipping", owner, CLIPPING)
        check_real(self.lr, "lr", owner, low=0.0, low_open=True)
        check_choice(self.accountant, "accountant", owner, ACCOUNTANTS)
        check_int(self.seed, "seed", owner, low=0)
        # The one "noise multiplier or target epsilon" rule (values are checked, nothing is calibrated yet).
        resolve_noise_multiplier(
            self.noise_multiplier,
            self.target_epsilon,
            sample_rate=self.sample_rate,
            steps=self.steps,
            delta=self.delta,
            owner=owner,
            calibrate=lambda eps: eps,
        )

    def batch_size(self, n: int) -> int:
        """The loader's batch size for ``n`` examples: ``round(q n)``, at least 1 (so ``q = batch_size / n``)."""
        return max(1, round(self.sample_rate * n))

    def private_training(self, model: nn.Module, data: Dataset[Any]) -> PrivateTraining:
        """``make_private`` of ``model`` with plain SGD on ``data``: this spec's clipping, noise and sampling."""
        n = len(data)  # type: ignore[arg-type]
        return make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.0),
            DataLoader(data, batch_size=self.batch_size(n)),
            noise_multiplier=self.noise_multiplier,
            target_epsilon=self.target_epsilon,
            delta=self.delta,
            steps=self.steps,
            max_grad_norm=self.max_grad_norm,
            clipping=self.clipping,
            accountant=self.accountant,
            seed=self.seed,
        )

    def calibrated(self, n: int | None = None) -> AuditSpec:
        """This spec with ``noise_multiplier`` resolved (calibrated from ``target_epsilon`` for ``n`` examples,
        default ``len(train)``, at the loader's actual rate ``batch_size(n) / n``), for repeated trainings."""
        n = len(self.train) if n is None else n
        sigma = resolve_noise_multiplier(
            self.noise_multiplier,
            self.target_epsilon,
            sample_rate=self.batch_size(n) / n,
            steps=self.steps,
            delta=self.delta,
            owner="AuditSpec",
            accountant=self.accountant,
        )
        return dataclasses.replace(self, noise_multiplier=sigma, target_epsilon=None)

    def build_model(self, seed: int | None = None) -> nn.Module:
        """``model_factory()`` after ``torch.manual_seed(seed)`` (default: this spec's seed)."""
        torch.manual_seed(self.seed if seed is None else seed)
        return self.model_factory()

    def auditor_generator(self, stream: int = 0) -> torch.Generator:
        """A generator for the auditor's own draws, independent of the training's (seeded by ``seed``)."""
        state = np.random.SeedSequence([self.seed, 0xA0D17, stream]).generate_state(1, dtype=np.uint32)[0]
        return torch.Generator().manual_seed(int(state))


def check_audit_args(owner: str, confidence: float, fault: str | None) -> float:
    """Validate the arguments every audit shares; return ``alpha = 1 - confidence``."""
    conf = check_real(confidence, "confidence", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    if fault not in FAULTS:
        check_choice(fault, "fault", owner, ("no_noise", "no_clipping"))
    return 1.0 - conf


def apply_fault(pt: PrivateTraining, fault: str | None) -> None:
    """Break the optimizer on purpose (the accountant is not told): ``no_noise`` or ``no_clipping``."""
    pt.optimizer.add_noise_enabled = fault != "no_noise"
    pt.optimizer.clipping_enabled = fault != "no_clipping"


__all__ = ["FAULTS", "AuditSpec", "apply_fault", "check_audit_args"]
