"""``make_private``: wrap a model, optimizer and data loader once; keep your own training loop.

>>> pt = make_private(model, opt, loader, target_epsilon=3.0, delta=1e-5, epochs=10)   # doctest: +SKIP
>>> for x, y in pt.data_loader:                                                        # doctest: +SKIP
...     pt.optimizer.zero_grad(); crit(pt.model(x), y).backward(); pt.optimizer.step()
>>> pt.epsilon()                                                                       # doctest: +SKIP

The guarantee: (epsilon, delta)-DP under add/remove-one adjacency for the Poisson-subsampled Gaussian
mechanism (sample rate q = batch_size / N, noise multiplier sigma, one event per logical step),
as bounded by ``privlab.accounting`` (PLD by default). With ``unit_ids`` the adjacency is
add/remove one *unit* (McMahan et al. 2018): units are Poisson-sampled at q = batch_size / U and each
sampled unit gives one example (:class:`privlab.dp.sampling.UnitPoissonSampler`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab import __version__
from privlab._json import jsonable
from privlab._validation import check_bool, check_choice, check_int, check_real
from privlab.accounting import ACCOUNTANTS, PrivacyLedger, resolve_noise_multiplier
from privlab.accounting.fixed_size import FixedSizeLedger, calibrate_fixed_size_noise
from privlab.dp import distributed
from privlab.dp.distributed import DataParallel
from privlab.dp.optimizer import DPOptimizer
from privlab.dp.sampling import (
    PER_UNIT,
    FixedSizeSampler,
    PoissonSampler,
    PrivateDataLoader,
    Sampler,
    ShardSampler,
    UnitPoissonSampler,
    loader_options,
    unit_codes,
)
from privlab.dp.validation import validate_module
from privlab.errors import InvalidParameterError

CLIPPING = ("flat", "per_layer", "ghost")
LOSS_REDUCTIONS = ("mean", "sum")


class Accountant:
    """The running privacy cost of a training: its ledger and ``epsilon(delta)``."""

    def __init__(self, ledger: PrivacyLedger | FixedSizeLedger) -> None:
        self.ledger = ledger

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon of the steps taken so far at ``delta`` (default: the training's delta)."""
        return self.ledger.epsilon(delta)

    @property
    def steps(self) -> int:
        return self.ledger.steps


@dataclass(frozen=True)
class PrivateTraining:
    """The one result of :func:`make_private`."""

    model: nn.Module
    optimizer: DPOptimizer
    data_loader: PrivateDataLoader
    accountant: Accountant
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    delta: float
    clipping: str
    privacy_unit: str = "example"
    data_parallel: DataParallel | None = None

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent so far (``delta`` defaults to the training's delta)."""
        return self.accountant.epsilon(delta)


def _check_resumed_ledger(
    ledger: object, poisson: bool, delta: float, accountant: str, n: int, batch_size: int, unit: str, sigma: float
) -> None:
    owner = "make_private"
    if poisson:
        want = f"a PrivacyLedger with delta={delta}, accountant={accountant!r} and privacy_unit={unit!r}"
        ok = (
            isinstance(ledger, PrivacyLedger)
            and ledger.delta == delta
            and ledger.accountant == accountant
            and ledger.privacy_unit == unit
        )
    else:
        want = f"a FixedSizeLedger with delta={delta}, dataset_size={n} and batch_size={batch_size}"
        ok = (
            isinstance(ledger, FixedSizeLedger)
            and ledger.delta == delta
            and ledger.dataset_size == n
            and ledger.batch_size == batch_size
        )
    if not ok:
        keys = ("delta", "accountant", "privacy_unit", "dataset_size", "batch_size")
        got = {k: getattr(ledger, k, None) for k in keys}
        got = {k: v for k, v in got.items() if v is not None}
        raise InvalidParameterError(
            f"The 'ledger' parameter of {owner} must be {want} (the training it resumes). "
            f"Got {type(ledger).__name__}({got}) instead."
        )
    held = getattr(ledger, "noise_multiplier", None)  # a fixed-size ledger composes one sigma only
    if not poisson and held is not None and held != sigma:
        raise InvalidParameterError(
            f"The 'ledger' parameter of {owner} accounts fixed-size steps at noise multiplier {held}; this call "
            f"would add steps at {sigma:.6g}, which it cannot compose. Resume with noise_multiplier={held} "
            "(not target_epsilon, which recalibrates). Got a FixedSizeLedger at a different noise multiplier."
        )


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    *,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float = 1e-5,
    epochs: int | None = None,
    steps: int | None = None,
    max_grad_norm: float = 1.0,
    clipping: str = "flat",
    accountant: str = "pld",
    poisson_sampling: bool = True,
    secure_rng: bool = False,
    physical_batch_size: int | None = None,
    seed: int | None = None,
    loss_reduction: str = "mean",
    ledger: PrivacyLedger | FixedSizeLedger | None = None,
    unit_ids: Any = None,
    privacy_unit: str | None = None,
    per_unit: str = "one",
) -> PrivateTraining:
    """Make ``model`` / ``optimizer`` / ``data_loader`` train with DP-SGD.

    Give ``noise_multiplier`` sigma, or ``target_epsilon`` with ``epochs`` or ``steps`` (sigma is then
    the smallest one whose epsilon after that many steps is <= target). The sample rate is
    ``data_loader.batch_size / len(dataset)``. ``loss_reduction`` states how the loss the user calls
    ``backward`` on reduces over the batch: "mean" (default, e.g. ``CrossEntropyLoss()``) or "sum".
    The noisy gradient is ``(sum_i clip(g_i) + N(0, sigma^2 C^2)) / (q N)`` for "mean" and without the
    division for "sum". ``seed`` makes sampling and noise reproducible (not secure); ``secure_rng``
    draws both from the OS CSPRNG. ``poisson_sampling=False`` draws fixed-size batches (a uniform
    subset of exactly ``batch_size`` examples per step) and accounts them with
    :mod:`privlab.accounting.fixed_size`: RDP, replace-one adjacency (sensitivity 2C), so for the same
    epsilon it needs about twice the noise, and its epsilon is not comparable with the Poisson one.
    ``ledger`` (e.g. ``load_checkpoint(...).ledger`` when resuming) records the new steps after the
    ones already in it, so ``epsilon()`` covers the whole training; its delta and accountant (or, for
    fixed-size batches, dataset and batch size) must match this call's. Note that ``target_epsilon``
    calibrates the noise for the new steps alone.

    ``unit_ids`` (one id per example of the loader's dataset: the user, document or secret it came
    from) makes the guarantee unit-level: each of the U units is sampled with probability
    q = batch_size / U (``batch_size`` is then the expected number of units per batch) and gives one
    of its examples, so one unit adds at most one clipped gradient per step. ``privacy_unit`` names
    the unit in the ledger (default "unit" with ``unit_ids``, "example" without). ``per_unit="all"``
    takes every example of a sampled unit instead and clips the sum of their gradients to C (flat
    clipping, no ``physical_batch_size``: a unit must not be split across chunks).
    """
    inner, par = distributed.unwrap(model, "make_private")
    with distributed.shared_refusal(par, "make_private", model):
        return _make_private(
            model,
            inner,
            par,
            optimizer,
            data_loader,
            noise_multiplier=noise_multiplier,
            target_epsilon=target_epsilon,
            delta=delta,
            epochs=epochs,
            steps=steps,
            max_grad_norm=max_grad_norm,
            clipping=clipping,
            accountant=accountant,
            poisson_sampling=poisson_sampling,
            secure_rng=secure_rng,
            physical_batch_size=physical_batch_size,
            seed=seed,
            loss_reduction=loss_reduction,
            ledger=ledger,
            unit_ids=unit_ids,
            privacy_unit=privacy_unit,
            per_unit=per_unit,
        )


def _make_private(
    wrapped: nn.Module,
    model: nn.Module,
    par: DataParallel | None,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    *,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    delta: float,
    epochs: int | None,
    steps: int | None,
    max_grad_norm: float,
    clipping: str,
    accountant: str,
    poisson_sampling: bool,
    secure_rng: bool,
    physical_batch_size: int | None,
    seed: int | None,
    loss_reduction: str,
    ledger: PrivacyLedger | FixedSizeLedger | None,
    unit_ids: Any,
    privacy_unit: str | None,
    per_unit: str,
) -> PrivateTraining:
    owner = "make_private"
    C = check_real(max_grad_norm, "max_grad_norm", owner, low=0.0, low_open=True)
    d = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    check_choice(clipping, "clipping", owner, CLIPPING)
    check_choice(accountant, "accountant", owner, ACCOUNTANTS)
    check_choice(loss_reduction, "loss_reduction", owner, LOSS_REDUCTIONS)
    if physical_batch_size is not None:
        check_int(physical_batch_size, "physical_batch_size", owner, low=1)
    if seed is not None:
        check_int(seed, "seed", owner, low=0)
    check_bool(poisson_sampling, "poisson_sampling", owner)
    check_bool(secure_rng, "secure_rng", owner)
    world = 1 if par is None else par.world_size
    validate_module(model)

    dataset = data_loader.dataset
    n = len(dataset)  # type: ignore[arg-type]
    batch_size = data_loader.batch_size
    if batch_size is None:
        raise InvalidParameterError(
            f"The 'data_loader' parameter of {owner} must have a batch_size (not a batch_sampler). Got None instead."
        )
    if n == 0 or batch_size * world > n:  # q = batch_size / n must be a probability; say it in the loader's terms
        per_rank = f" divided by the {world} ranks ({n // world})" if world > 1 else ""
        raise InvalidParameterError(
            f"The 'data_loader' parameter of {owner} must have a batch_size of at most its dataset's size ({n})"
            f"{per_rank}, the expected Poisson batch size{' per rank' if world > 1 else ''}. "
            f"Got batch_size={batch_size} instead."
        )
    if par is not None and not poisson_sampling:
        raise InvalidParameterError(
            f"The 'poisson_sampling' parameter of {owner} must be True with a DistributedDataParallel model: each "
            "rank Poisson-samples its own shard, which adds up to Poisson sampling of the whole dataset; "
            "fixed-size batches would need one draw shared by every rank. Got False instead."
        )
    check_choice(per_unit, "per_unit", owner, PER_UNIT)
    if per_unit == "all" and (unit_ids is None or clipping != "flat" or physical_batch_size is not None):
        raise InvalidParameterError(
            f"The 'per_unit' parameter of {owner} can be 'all' only with 'unit_ids', clipping='flat' and no "
            f"physical_batch_size (the summed gradient of a unit's examples is clipped in one piece). Got "
            f"per_unit='all' with unit_ids={'given' if unit_ids is not None else None}, clipping={clipping!r}, "
            f"physical_batch_size={physical_batch_size} instead."
        )
    unit = "example"
    n_units = n
    unit_of: torch.Tensor | None = None
    if unit_ids is not None:
        unit_of = unit_codes(unit_ids, owner)
        if unit_of.numel() != n:
            raise InvalidParameterError(
                f"The 'unit_ids' parameter of {owner} must give one unit id per example of the data loader's "
                f"dataset ({n}). Got {unit_of.numel()} ids instead."
            )
        if not poisson_sampling:
            raise InvalidParameterError(
                f"The 'poisson_sampling' parameter of {owner} must be True with 'unit_ids' (units are "
                "Poisson-sampled). Got False instead."
            )
        n_units = int(unit_of.max()) + 1
        if batch_size * world > n_units:
            per_rank = f" divided by the {world} ranks ({n_units // world})" if world > 1 else ""
            raise InvalidParameterError(
                f"The 'data_loader' parameter of {owner} must have a batch_size of at most the number of units "
                f"({n_units}){per_rank}, the expected number of units per batch. Got batch_size={batch_size} instead."
            )
        unit = "unit" if privacy_unit is None else privacy_unit
    elif privacy_unit not in (None, "example"):
        raise InvalidParameterError(
            f"The 'privacy_unit' parameter of {owner} must be 'example' (or None) without 'unit_ids': a "
            f"unit-level guarantee needs the unit of every example. Got {privacy_unit!r} instead."
        )
    if not isinstance(unit, str) or not unit:
        raise InvalidParameterError(
            f"The 'privacy_unit' parameter of {owner} must be a non-empty string. Got {unit!r} instead."
        )
    q = batch_size * world / n_units  # batch_size is per rank, as with DDP's DistributedSampler
    per_epoch = round(1 / q)
    if steps is not None:
        total = check_int(steps, "steps", owner, low=1)
    elif epochs is not None:
        total = check_int(epochs, "epochs", owner, low=1) * per_epoch
    else:
        total = 0
    sigma = resolve_noise_multiplier(
        noise_multiplier,
        target_epsilon,
        sample_rate=q,
        steps=total,
        delta=d,
        owner=owner,
        accountant=accountant,
        calibrate=None if poisson_sampling else (lambda eps: calibrate_fixed_size_noise(eps, n, batch_size, total, d)),
        steps_name="'epochs' (or 'steps')",
    )

    if ledger is None:
        ledger = (
            PrivacyLedger(d, accountant, privacy_unit=unit) if poisson_sampling else FixedSizeLedger(d, n, batch_size)
        )
    else:
        _check_resumed_ledger(ledger, poisson_sampling, d, accountant, n, batch_size, unit, sigma)
    if seed is not None and ledger.steps > 0:  # a resumed training must not replay the first run's noise and coins
        seed = distributed.rank_seed(seed, ledger.steps, "resumed")
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") if seed is None else seed)
    sampling_gen = gen
    if par is not None:  # data-parallel: each rank its own coins and its own slice of the noise
        gen, sampling_gen = (
            torch.Generator().manual_seed(
                int.from_bytes(os.urandom(8), "little") if seed is None else distributed.rank_seed(seed, par.rank, s)
            )
            for s in ("noise", "sampling")
        )
    dp_opt = DPOptimizer(
        optimizer,
        model,
        noise_multiplier=sigma,
        max_grad_norm=C,
        expected_batch_size=q * n_units,
        sample_rate=q,
        ledger=ledger,
        clipping=clipping,
        loss_reduction=loss_reduction,
        generator=gen,
        secure_rng=secure_rng,
        data_parallel=par,
    )
    sampler: Sampler
    if par is not None:
        shard = distributed.shard_indices(n, par.rank, world, unit_of)
        if unit_of is not None:
            local = unit_codes(unit_of[shard], owner)
            sampler = UnitPoissonSampler(local, q, per_epoch, sampling_gen, secure_rng, per_unit)
        else:
            sampler = PoissonSampler(len(shard), q, per_epoch, sampling_gen, secure_rng)
        sampler = ShardSampler(sampler, shard, unit_of)
    elif unit_of is not None:
        sampler = UnitPoissonSampler(unit_of, q, per_epoch, gen, secure_rng, per_unit)
    elif poisson_sampling:
        sampler = PoissonSampler(n, q, per_epoch, gen, secure_rng)
    else:
        sampler = FixedSizeSampler(n, batch_size, per_epoch, gen, secure_rng)
    loader = PrivateDataLoader(dataset, sampler, physical_batch_size, loader_options=loader_options(data_loader))
    loader.on_chunk = dp_opt.signal_chunk
    loader.on_logical_batch = dp_opt.begin_logical_batch
    if per_unit == "all":
        loader.on_groups = dp_opt.set_groups
    if par is not None:
        try:
            statement = _mechanism_statement(model, sigma, C, q, d, accountant, clipping, loss_reduction, n,
                                             batch_size, total, unit, per_unit, unit_of, ledger.steps, world,
                                             dataset, dp_opt, optimizer)
            distributed.agree(statement, par, owner)
        except BaseException:
            dp_opt.detach()
            raise
        if not getattr(wrapped, "_privlab_refuses_join", False):  # DDP.join() adds collectives to the forward
            wrapped.register_forward_pre_hook(lambda m, args: distributed.refuse_join(m, owner))
            wrapped._privlab_refuses_join = True  # type: ignore[assignment]
    return PrivateTraining(wrapped, dp_opt, loader, Accountant(ledger), sigma, C, q, total, d, clipping, unit, par)


def _by_content(value: Any) -> str:
    """An optimizer setting JSON cannot hold, by its repr (by its type if the repr is a memory address)."""
    text = repr(value)
    return type(value).__qualname__ if " at 0x" in text else text


def _optimizer_statement(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and every param_groups setting but the parameters themselves, one field each."""
    kind = type(optimizer)
    out: dict[str, Any] = {"optimizer": f"{kind.__module__}.{kind.__qualname__}",
                           "optimizer.param_groups": len(optimizer.param_groups)}
    for i, group in enumerate(optimizer.param_groups):
        out[f"optimizer.param_groups[{i}].parameters"] = len(group["params"])
        for key, value in group.items():
            if key != "params":
                out[f"optimizer.param_groups[{i}].{key}"] = jsonable(value, _by_content)
    return out


def _mechanism_statement(
    model: nn.Module, sigma: float, C: float, q: float, delta: float, accountant: str, clipping: str,
    loss_reduction: str, n: int, batch_size: int, steps: int, unit: str, per_unit: str,
    unit_of: torch.Tensor | None, ledger_steps: int, world: int, dataset: Any, dp_opt: DPOptimizer,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """What every rank of a data-parallel training must agree on (:func:`distributed.agree`).

    The mechanism's settings, and what keeps the replicas equal: the optimizer (class and
    hyper-parameters) and the values of every parameter and buffer of the bare module.
    """
    params = [[k, list(p.shape), str(p.dtype)] for k, p in model.named_parameters() if p.requires_grad]
    units = None if unit_of is None else hashlib.sha256(unit_of.numpy().tobytes()).hexdigest()
    return {
        "privlab": __version__, "world_size": world, "noise_multiplier": sigma, "max_grad_norm": C,
        "sample_rate": q, "delta": delta, "accountant": accountant, "clipping": clipping,
        "loss_reduction": loss_reduction, "dataset_size": n, "batch_size": batch_size, "steps": steps,
        "privacy_unit": unit, "per_unit": per_unit, "unit_ids": units, "ledger_steps": ledger_steps,
        "dataset": distributed.dataset_fingerprint(dataset),
        "trainable_parameters": params,
        "weights": distributed.weights_digest(model),
        **_optimizer_statement(optimizer),
        "allreduce_buckets": None if dp_opt.allreduce is None else dp_opt.allreduce.buckets,
    }
