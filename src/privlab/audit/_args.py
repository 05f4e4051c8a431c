"""Shared argument checks for the DP-SGD audits: one place turns user arguments into a checked spec."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting import calibrate_noise, epsilon
from privlab.data.dataset import ArrayDataset
from privlab.errors import InvalidParameterError

FAULTS = (None, "no_noise", "no_clipping")


@dataclasses.dataclass(frozen=True)
class DPSGDSpec:
    """Checked DP-SGD hyper-parameters plus the accountant's claim for them."""

    sample_rate: float
    steps: int
    delta: float
    max_grad_norm: float
    lr: float
    noise_multiplier: float
    claimed_epsilon: float
    alpha: float
    fault: str | None


def resolve_dp_sgd(
    owner: str,
    *,
    sample_rate: float,
    steps: int,
    delta: float,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    max_grad_norm: float,
    lr: float,
    confidence: float,
    accountant: str,
    fault: str | None,
) -> DPSGDSpec:
    """Validate the common arguments; calibrate sigma from ``target_epsilon`` if given; compute the claim.

    The claim is the accountant's epsilon for the *intended* mechanism: a ``fault`` is not reported to it.
    """
    q = check_real(sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
    T = check_int(steps, "steps", owner, low=1)
    d = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    C = check_real(max_grad_norm, "max_grad_norm", owner, low=0.0, low_open=True)
    conf = check_real(confidence, "confidence", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    eta = check_real(lr, "lr", owner, low=0.0, low_open=True)
    if fault not in FAULTS:
        check_choice(fault, "fault", owner, ("no_noise", "no_clipping"))
    if (noise_multiplier is None) == (target_epsilon is None):
        raise InvalidParameterError(
            f"The 'noise_multiplier' parameter of {owner} must be given if and only if target_epsilon is not. "
            f"Got noise_multiplier={noise_multiplier!r}, target_epsilon={target_epsilon!r} instead."
        )
    if target_epsilon is not None:
        eps = check_real(target_epsilon, "target_epsilon", owner, low=0.0, low_open=True)
        sigma = calibrate_noise(eps, q, T, d, accountant)
    else:
        sigma = check_real(noise_multiplier, "noise_multiplier", owner, low=0.0)
    claimed = epsilon(sigma, q, T, d, accountant)
    return DPSGDSpec(q, T, d, C, eta, sigma, claimed, 1.0 - conf, fault)


def accuracy(model: nn.Module, test: ArrayDataset | None) -> float | None:
    """Top-1 accuracy of ``model`` on ``test`` (None without a test set)."""
    if test is None:
        return None
    with torch.no_grad():
        return float((model(test.x).argmax(1) == test.y).float().mean())
