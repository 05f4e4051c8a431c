"""Audit a DP-SGD training run end to end with white-box gradient canaries.

The auditor plants m *gradient canaries* (Nasr et al. 2023, "Tight Auditing of Differentially
Private Machine Learning"; Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training
Run", Sec. 7): canary i is a Dirac gradient ``g_i = A * C * e_{c_i}`` on its own parameter
coordinate ``c_i``, with raw norm ``A * C`` (``A = canary_norm_multiplier`` > 1) so that a correct
implementation must clip it down to C. Each canary is included with probability 1/2 (one-run) and,
when included, joins each step's Poisson sample with the same rate q as real examples, entering the
mechanism *as one example's per-sample gradient*: it goes through the same clipping, summation and
noise as the data. The auditor sees only the initial and final parameters; with plain SGD

    theta_T - theta_0 = -(lr / (q N)) * sum_t (sum of clipped gradients_t + N(0, sigma^2 C^2 I)),

so ``score_i = -(theta_T - theta_0)[c_i]`` is, up to a positive factor, the sum over steps of the
canary's clipped contribution plus Gaussian noise (and whatever real gradients touch c_i). For each
canary this is exactly the Poisson-subsampled Gaussian mechanism the accountant analyses, which is
why white-box audits of DP-SGD can be tight.

Guesses: IN for the ``k_plus`` highest scores, OUT for the ``k_minus`` lowest, chosen from a small
grid fixed in advance with a Bonferroni split of the confidence (``audit_one_run_grid``).
``fault`` switches off noise or clipping *without telling the accountant*: the audit must then
report a lower bound above the claimed epsilon (tests check it does).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting import calibrate_noise, epsilon
from privlab.audit.stats import AuditResult, audit_one_run_grid
from privlab.data.dataset import ArrayDataset
from privlab.dp import add_noise, clip_gradients, per_sample_gradients
from privlab.errors import InvalidParameterError

FAULTS = (None, "no_noise", "no_clipping")


@dataclasses.dataclass(frozen=True)
class DPTrainingAudit:
    """Outcome of :func:`audit_dp_training`.

    ``claimed_epsilon`` is what the accountant states for the run; ``audit`` is the empirical lower
    bound with its confidence and the test used; ``violated`` is True when the proven lower bound
    exceeds the claim, i.e. the implementation (or the accounting) is broken.
    """

    claimed_epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    audit: AuditResult
    fault: str | None
    test_accuracy: float | None = None

    @property
    def violated(self) -> bool:
        return self.audit.violates_claim

    @property
    def ratio(self) -> float:
        """Audited lower bound / claimed epsilon (1 means the audit is tight)."""
        if self.claimed_epsilon <= 0 or math.isinf(self.claimed_epsilon):
            return math.nan
        return self.audit.epsilon_lower_bound / self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        return {
            "claimed_epsilon": self.claimed_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "fault": self.fault,
            "test_accuracy": self.test_accuracy,
            "violated": self.violated,
            "audit": self.audit.to_dict(),
        }


def default_grid(m: int) -> list[tuple[int, int]]:
    """Guess counts fixed before training: k+ = k- in {m/100, m/20, m/10, m/4} (at least 1)."""
    ks = sorted({max(1, m // d) for d in (100, 20, 10, 4)})
    return [(k, k) for k in ks]


def _flat_index(model: nn.Module) -> tuple[list[str], list[torch.Size], list[int]]:
    names, shapes, sizes = [], [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            names.append(n)
            shapes.append(p.shape)
            sizes.append(p.numel())
    return names, shapes, sizes


def quiet_coordinates(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: ArrayDataset,
    m: int,
    generator: torch.Generator,
    probe: int = 1024,
) -> torch.Tensor:
    """The ``m`` flat parameter coordinates the data's gradients touch least (ties broken at random).

    Real gradients on a canary's coordinate act as noise for the auditor, so canaries go where the
    data is quiet (for an MLP on MNIST: first-layer weights of always-black pixels, whose gradient is
    exactly zero). Chosen before the canaries' inclusion is drawn, so it cannot bias the test.
    """
    idx = torch.randperm(len(data), generator=generator)[: min(probe, len(data))]
    per = per_sample_gradients(model, loss_fn, data.x[idx], data.y[idx])
    mag = torch.cat([per[n].abs().sum(0).reshape(-1) for n, p in model.named_parameters() if p.requires_grad])
    jitter = torch.rand(mag.shape, generator=generator) * 1e-12  # random order among exact ties
    return torch.argsort(mag + jitter)[:m]


def audit_dp_training(
    model_factory: Callable[[], nn.Module],
    train: ArrayDataset,
    *,
    sample_rate: float,
    steps: int,
    delta: float = 1e-5,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = 1.0,
    lr: float = 0.5,
    canaries: int = 1000,
    canary_norm_multiplier: float = 10.0,
    confidence: float = 0.95,
    grid: list[tuple[int, int]] | None = None,
    accountant: str = "pld",
    fault: str | None = None,
    test: ArrayDataset | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DPTrainingAudit:
    """Train with DP-SGD plus ``canaries`` white-box gradient canaries and audit the claim.

    Give exactly one of ``noise_multiplier`` or ``target_epsilon`` (then the noise is calibrated).
    ``fault`` in {None, "no_noise", "no_clipping"} breaks the implementation on purpose (the claimed
    epsilon is still computed from the intended noise): a sound audit must flag it.
    """
    owner = "audit_dp_training"
    q = check_real(sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
    T = check_int(steps, "steps", owner, low=1)
    check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    C = check_real(max_grad_norm, "max_grad_norm", owner, low=0.0, low_open=True)
    m = check_int(canaries, "canaries", owner, low=2)
    A = check_real(canary_norm_multiplier, "canary_norm_multiplier", owner, low=1.0)
    conf = check_real(confidence, "confidence", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    check_real(lr, "lr", owner, low=0.0, low_open=True)
    if fault not in FAULTS:
        check_choice(fault, "fault", owner, ("no_noise", "no_clipping"))
    if (noise_multiplier is None) == (target_epsilon is None):
        raise InvalidParameterError(
            f"The 'noise_multiplier' parameter of {owner} must be given if and only if target_epsilon is not. "
            f"Got noise_multiplier={noise_multiplier!r}, target_epsilon={target_epsilon!r} instead."
        )
    sigma = (
        calibrate_noise(target_epsilon, q, T, delta, accountant)
        if target_epsilon is not None
        else check_real(noise_multiplier, "noise_multiplier", owner, low=0.0)
    )
    claimed = epsilon(sigma, q, T, delta, accountant)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model_factory()
    names, shapes, sizes = _flat_index(model)
    d = sum(sizes)
    if m > d:
        raise InvalidParameterError(
            f"The 'canaries' parameter of {owner} must be at most the number of trainable parameters ({d}). "
            f"Got {m} instead."
        )
    coords = quiet_coordinates(model, loss_fn, train, m, gen)  # one private coordinate per canary
    included = torch.rand(m, generator=gen) < 0.5
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).clone()
    params = dict(model.named_parameters())
    N = len(train)
    norm = 1.0 / (q * N)  # Poisson batches are normalised by their expected size

    it = tqdm(range(T), desc="DP-SGD with canaries", disable=not progress, leave=False)
    for _ in it:
        idx = torch.nonzero(torch.rand(N, generator=gen) < q).squeeze(1)
        per = per_sample_gradients(model, loss_fn, train.x[idx], train.y[idx])
        hit = torch.nonzero(included & (torch.rand(m, generator=gen) < q)).squeeze(1)
        if hit.numel():
            rows = torch.zeros(hit.numel(), d)
            rows[torch.arange(hit.numel()), coords[hit]] = A * C  # raw norm A*C: must be clipped to C
            for name, part in zip(names, torch.split(rows, sizes, dim=1), strict=True):
                per[name] = torch.cat([per[name], part.reshape(-1, *params[name].shape)])
        if fault == "no_clipping":
            summed = {k: v.sum(0) for k, v in per.items()}
        else:
            summed = clip_gradients(per, C, "flat")
        if fault != "no_noise":
            summed = add_noise(summed, sigma * C, generator=gen)
        with torch.no_grad():
            for name in names:
                params[name].sub_(lr * norm * summed[name])

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
    scores = -(theta - theta0)[coords].numpy()
    result = audit_one_run_grid(
        scores,
        included.numpy(),
        grid=grid or default_grid(m),
        delta=delta,
        alpha=1.0 - conf,
        seed=seed,
        claimed_epsilon=claimed,
    )
    acc = None
    if test is not None:
        with torch.no_grad():
            acc = float((model(test.x).argmax(1) == test.y).float().mean())
    return DPTrainingAudit(claimed, delta, sigma, q, T, result, fault, acc)


def audit_summary(a: DPTrainingAudit) -> str:
    """One line for logs and the CLI."""
    verdict = "VIOLATED" if a.violated else "consistent"
    return (
        f"claimed eps {a.claimed_epsilon:.3f} (delta {a.delta:g}); audited lower bound "
        f"{a.audit.epsilon_lower_bound:.3f} at {100 * (a.audit.confidence or 0):.0f}% confidence "
        f"[{a.audit.method}] -> {verdict}" + (f" (fault: {a.fault})" if a.fault else "")
    )


__all__ = ["DPTrainingAudit", "audit_dp_training", "audit_summary", "default_grid"]

