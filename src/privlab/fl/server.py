"""The server side: Flower's FedAvg (and its DP wrappers), privlab's accountant, per-round records.

The strategy is Flower's own (``flwr.serverapp.strategy.FedAvg``, Message API) with equal client
weights (DP needs them: the sensitivity of a weighted mean is not C/m). Central DP wraps it in
subclasses of Flower's ``DifferentialPrivacyServerSideFixedClipping`` or ``...AdaptiveClipping``
(:mod:`privlab.fl.central_dp`: privlab's noise source, Andrew et al.'s norm update); privlab adds
what Flower lacks: the user-level (epsilon, delta) after every round from
:class:`privlab.fl.privacy.UserLevelAccountant` (Flower's optional accountant does not amplify by
sampling), reported in the logs, the progress bar and the result.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.dp.noise import derive_seed
from privlab.errors import InvalidParameterError, PrivlabError
from privlab.fl.central_dp import adaptive_clipping, fixed_clipping
from privlab.fl.client import build_fl_model, fl_test_data
from privlab.fl.config import FedConfig
from privlab.fl.privacy import accountant_of, noise_multiplier_of
from privlab.fl.randomness import NoiseSource, secure_shuffled
from privlab.fl.sampling import poisson_fedavg

log = logging.getLogger("privlab.fl")


class FederatedRunError(PrivlabError, RuntimeError):
    """A federated run failed on the server side (a round could not be aggregated, a client failed, ...)."""


class StrictGrid:
    """A Flower ``Grid`` that refuses a round in which a sampled client did not answer.

    Flower's FedAvg drops failed or missing replies and its DP wrappers skip such a round with a
    log line; either way the round's privacy and accuracy would be computed for clients who never
    took part. Here a missing or failed reply ends the run with :class:`FederatedRunError` naming
    the round's shortfall, after at most the strategy's reply ``timeout``.

    ``secure_sampling``: :meth:`get_node_ids` returns the nodes in a fresh CSPRNG order on every
    call, so the clients Flower's ``random.sample`` picks by position are unpredictable from its seed.
    """

    def __init__(self, grid: Any, *, secure_sampling: bool = False) -> None:
        self._grid = grid
        self._secure_sampling = secure_sampling

    def get_node_ids(self) -> Any:
        ids = self._grid.get_node_ids()
        return secure_shuffled(list(ids)) if self._secure_sampling else ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        sent = list(messages)
        replies = list(self._grid.send_and_receive(sent, timeout=timeout))
        failed = [r for r in replies if r.has_error()]
        if len(replies) < len(sent) or failed:
            why = "; ".join(f"{r.error.code}: {r.error.reason}" for r in failed[:3])
            raise FederatedRunError(
                f"{len(sent) - len(replies)} of {len(sent)} sampled clients sent no reply within "
                f"timeout={timeout} s and {len(failed)} replied with an error{': ' + why if why else ''}; "
                "the round cannot be aggregated as sampled (a dead SuperNode or a failing ClientApp)."
            )
        return replies


@dataclass(frozen=True)
class RoundRecord:
    """The global model after one round: test accuracy/loss, user-level epsilon so far, clip norm, time.

    ``epsilon`` is the bound for the run's client sampling (``FedConfig.sampling``,
    :meth:`privlab.fl.privacy.UserLevelAccountant.epsilon`).
    """

    round: int
    accuracy: float
    loss: float
    epsilon: float | None
    clip_norm: float | None
    seconds: float


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayDataset, batch: int = 2000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``data``."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(data), batch):
        out = model(data.x[i : i + batch])
        y = data.y[i : i + batch]
        correct += int((out.argmax(1) == y).sum())
        loss += float(F.cross_entropy(out, y, reduction="sum"))
    return correct / len(data), loss / len(data)


def build_strategy(cfg: FedConfig, source: NoiseSource | None = None) -> Any:
    """Flower's FedAvg with m of N clients per round and equal weights, DP-wrapped for central noise.

    ``cfg.sampling == "poisson"``: each client joins with probability m / N and the sum is divided
    by m (:func:`privlab.fl.sampling.poisson_fedavg`); "fixed": Flower's exactly-m sampling.

    ``source`` draws the central noise (default: from ``cfg.secure_rng`` and ``cfg.seed``, see
    :func:`noise_source`); the wrappers are in :mod:`privlab.fl.central_dp`.
    """
    from flwr.serverapp.strategy import FedAvg

    m, n = cfg.clients_per_round, cfg.num_clients
    kwargs: dict[str, Any] = dict(
        fraction_train=m / n, fraction_evaluate=0.0, min_train_nodes=m, min_available_nodes=n, weighted_by_key="weight"
    )
    base = poisson_fedavg(cfg, **kwargs) if cfg.sampling == "poisson" else FedAvg(**kwargs)
    dp = cfg.dp
    if dp is None or dp.noise == "distributed":
        return base
    source = noise_source(cfg) if source is None else source
    z = noise_multiplier_of(cfg)
    if dp.clipping == "fixed":
        return fixed_clipping(base, z, dp.clip_norm, m, source)
    sigma_b = dp.clipped_count_stddev if dp.clipped_count_stddev is not None else m / 20
    if z >= 2 * sigma_b:
        raise InvalidParameterError(
            "The 'clipped_count_stddev' parameter of UserDPConfig must exceed z / 2 = "
            f"{z / 2:.4g} for adaptive clipping (Andrew et al. 2021: z_update = (z^-2 - (2 sigma_b)^-2)^-1/2). "
            f"Got {sigma_b:.4g} instead (default: clients_per_round / 20)."
        )
    return adaptive_clipping(
        base, z, m, clip_norm=dp.clip_norm, target_quantile=dp.target_quantile, clip_lr=dp.clip_lr,
        clipped_count_stddev=dp.clipped_count_stddev, source=source,
    )


def noise_source(cfg: FedConfig) -> NoiseSource:
    """The server's DP noise: the OS CSPRNG with ``cfg.secure_rng``, else seeded from ``cfg.seed``."""
    return NoiseSource(cfg.secure_rng, None if cfg.secure_rng else derive_seed(cfg.seed, "central-noise"))


def run_server(grid: Any, cfg: FedConfig, *, progress: bool = False, timeout: float = 600.0) -> tuple[
    list[RoundRecord], dict[str, torch.Tensor]
]:
    """The ServerApp's body: ``cfg.rounds`` rounds of (DP-)FedAvg; returns per-round records and the final state.

    Not for ``cfg.secagg`` (that is :func:`privlab.fl.secagg.run_secagg_server`): this body receives
    every model in the clear. Client sampling: Poisson (:mod:`privlab.fl.sampling`) or Flower's
    ``random.sample``, seeded by ``cfg.seed``, or from the OS CSPRNG with ``cfg.secure_rng``
    (a CSPRNG permutation of the nodes for Flower's sampling, :class:`StrictGrid`).
    """
    from flwr.app import ArrayRecord, MetricRecord

    if cfg.secagg:
        raise InvalidParameterError(
            "The 'secagg' parameter of FedConfig is True, but run_server aggregates in the clear (the server "
            "would receive every model); run SecAgg+ with privlab.fl.secagg.run_secagg_server or "
            "run_federated. Got secagg=True."
        )
    random.seed(cfg.seed)  # Flower samples clients with the random module (see StrictGrid for secure_rng)
    model = build_fl_model(cfg)
    test = fl_test_data(cfg)
    strategy = build_strategy(cfg)
    acct = accountant_of(cfg)
    records: list[RoundRecord] = []
    bar = tqdm(total=cfg.rounds, disable=not progress, desc="federated rounds", leave=False)
    clock = [time.perf_counter()]

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        acc, loss = evaluate(model, test)
        if server_round > 0:
            eps = acct.step() if acct is not None else None
            # the norm this round's updates were clipped to (Flower's clipping_norm is already next round's)
            clip = None if cfg.dp is None else float(getattr(strategy, "round_clip_norm", cfg.dp.clip_norm))
            now = time.perf_counter()
            records.append(RoundRecord(server_round, acc, loss, eps, clip, now - clock[0]))
            clock[0] = now
            eps_txt = "" if eps is None else f" user-level epsilon={eps:.3f} (delta={cfg.dp.delta:g})"  # type: ignore[union-attr]
            log.info("round %d: accuracy=%.4f loss=%.4f%s", server_round, acc, loss, eps_txt)
            bar.update(1)
            bar.set_postfix(acc=f"{acc:.3f}", eps="-" if eps is None else f"{eps:.2f}")
        return MetricRecord({"accuracy": acc, "loss": loss})

    try:
        result = strategy.start(
            StrictGrid(grid, secure_sampling=cfg.secure_rng),
            ArrayRecord(model.state_dict()),
            num_rounds=cfg.rounds,
            timeout=timeout,
            evaluate_fn=evaluate_fn,
        )
    finally:
        bar.close()
    state = result.arrays.to_torch_state_dict() if len(result.arrays) else model.state_dict()
    return records, state


def final_epsilon(records: list[RoundRecord]) -> float:
    """The last round's user-level epsilon (``inf`` without DP)."""
    eps = records[-1].epsilon if records else None
    return math.inf if eps is None else eps
