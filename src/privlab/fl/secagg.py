"""Secure aggregation with Flower's SecAgg+ protocol (Bell, Bonawitz, Gascon, Lepoint & Raykova 2020).

Each sampled client quantises its model to integers, adds pairwise masks agreed with its
neighbours (Diffie-Hellman keys) and a private self-mask, and sends only the masked vector; the
server learns the sum once the masks cancel, using Shamir shares of the secrets to remove the
masks of clients that dropped out after sharing keys. Flower implements the protocol as a
``ServerApp`` workflow (``flwr.server.workflow.SecAggPlusWorkflow``, legacy strategy API) and a
client mod (``flwr.client.mod.secaggplus_mod``); this module wires them to privlab's clients.

Dropouts: every stage waits at most ``timeout`` seconds. A client that drops after the key
sharing is removed from the sum (the result is the mean of the survivors); when fewer than the
reconstruction threshold remain, Flower halts the round and :func:`run_secagg_server` raises
:class:`SecAggError`, never hangs.

Distributed DP under dropouts: the sum of the k survivors' noise has std ``sqrt(k) s`` for a
per-client std s, so calibrating s to all m clients would leave ``z sqrt(k / m)`` after dropouts
while the accountant records z. Clients therefore calibrate to the fewest vectors a round may sum,
``k_min = max(2, ceil(SECAGG_THRESHOLD m))`` (:func:`privlab.fl.client.distributed_noise_std`),
and a round that summed fewer than k_min masked vectors is refused with :class:`SecAggError`, so
the accounted z is a lower bound on every round's realised noise multiplier.

Quantisation: Flower clips each value to [-SECAGG_CLIPPING_RANGE, SECAGG_CLIPPING_RANGE] before
quantising; a client whose model has a value outside it refuses to send (:class:`SecAggError`,
surfaced by the server) instead of being clipped silently, and ``FedConfig`` refuses a
``clients_per_round`` whose quantised sum can wrap the modulus.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from privlab.errors import PrivlabError
from privlab.fl.client import build_fl_model, fl_test_data, secagg_min_summed, train_client
from privlab.fl.config import (
    SECAGG_CLIPPING_RANGE,
    SECAGG_MODULUS,
    SECAGG_QUANTIZATION_RANGE,
    SECAGG_THRESHOLD,
    FedConfig,
)
from privlab.fl.privacy import accountant_of
from privlab.fl.randomness import secure_shuffled
from privlab.fl.server import RoundRecord, evaluate

# Model parameters are clipped to [-8, 8] and quantised to 2^22 levels before masking (Flower's defaults).
CLIPPING_RANGE = SECAGG_CLIPPING_RANGE
QUANTIZATION_RANGE = SECAGG_QUANTIZATION_RANGE
OUT_OF_RANGE = "outside SecAgg+'s quantisation range"  # marks a client's refusal in its error reply


class SecAggError(PrivlabError, RuntimeError):
    """A secure-aggregation round could not finish (too many clients dropped)."""


def make_secagg_client_app(cfg: FedConfig, fail: Callable[[int, int], bool] | None = None) -> Any:
    """A legacy ``ClientApp`` (NumPyClient + ``secaggplus_mod``) whose fit is :func:`train_client`.

    ``fail(client, round)`` returning True makes that client raise during fit (a dropout; tests).
    """
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, client: int) -> None:
            self.client = client

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            rnd = int(config.get("server_round", 1))
            if fail is not None and fail(self.client, rnd):
                raise RuntimeError(f"client {self.client} dropped out in round {rnd}")
            keys = list(build_fl_model(cfg).state_dict().keys())
            state = {k: torch.from_numpy(np.array(v)) for k, v in zip(keys, parameters, strict=True)}
            new = train_client(cfg, self.client, rnd, state)
            check_quantisable(new, self.client, rnd)
            return [new[k].numpy() for k in keys], 1, {}

    def client_fn(context: Any) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def check_quantisable(state: dict[str, torch.Tensor], client: int, server_round: int) -> None:
    """Raise :class:`SecAggError` if a value of ``state`` lies outside [-CLIPPING_RANGE, CLIPPING_RANGE].

    Flower's quantiser clips such a value silently, so the aggregate would be wrong without notice.
    """
    worst = max((float(v.abs().max()) for v in state.values() if v.numel()), default=0.0)
    if not worst <= CLIPPING_RANGE:  # also catches NaN
        raise SecAggError(
            f"client {client}'s model in round {server_round} has a value of magnitude {worst:.4g}, {OUT_OF_RANGE} "
            f"[-{CLIPPING_RANGE:g}, {CLIPPING_RANGE:g}]; SecAgg+ would clip it silently. Lower lr or the model's "
            "scale, or aggregate in the clear."
        )


class _GuardedGrid:
    """A grid that turns a client's out-of-range refusal (an error reply) into a :class:`SecAggError` here.

    SecAgg+ treats an error reply as a dropout; without this the refusal would only shrink the sum.
    """

    def __init__(self, grid: Any) -> None:
        self._grid = grid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            if r.has_error() and OUT_OF_RANGE in str(r.error.reason):
                raise SecAggError(f"A SecAgg+ client refused to send its masked vector: {r.error.reason}")
        return replies


def _secure_client_manager() -> Any:
    """A legacy ``SimpleClientManager`` that samples over a fresh CSPRNG order of the clients (``secure_rng``)."""
    from flwr.server import SimpleClientManager

    class SecureSampling(SimpleClientManager):  # type: ignore[misc]
        def sample(self, num_clients: int, min_num_clients: int | None = None, criterion: Any = None) -> list[Any]:
            with self._cv:
                self.clients = dict(secure_shuffled(list(self.clients.items())))
            return list(super().sample(num_clients, min_num_clients, criterion))

    return SecureSampling()


def _floor_fedavg(min_summed: int | None, **kwargs: Any) -> Any:
    """Flower's legacy FedAvg that refuses a round which summed fewer than ``min_summed`` masked vectors."""
    from flwr.server.strategy import FedAvg

    class FloorFedAvg(FedAvg):  # type: ignore[misc]
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            if min_summed is not None and len(results) < min_summed:
                raise SecAggError(
                    f"SecAgg+ round {server_round} summed {len(results)} masked vectors, fewer than the "
                    f"{min_summed} the clients' distributed DP noise is calibrated to: its noise multiplier would "
                    "be below the accounted z, so the round is refused."
                )
            return super().aggregate_fit(server_round, results, failures)

    return FloorFedAvg(**kwargs)


def run_secagg_server(
    grid: Any,
    context: Any,
    cfg: FedConfig,
    *,
    progress: bool = False,
    timeout: float = 120.0,
    num_shares: float = 1.0,
    reconstruction_threshold: float = SECAGG_THRESHOLD,
) -> tuple[list[RoundRecord], dict[str, torch.Tensor]]:
    """FedAvg rounds whose aggregation is SecAgg+ (the server only ever sees masked vectors).

    ``num_shares`` and ``reconstruction_threshold`` are fractions of the sampled clients; every
    protocol stage times out after ``timeout`` seconds. With distributed DP a round that summed
    fewer than :func:`privlab.fl.client.secagg_min_summed` vectors raises :class:`SecAggError`
    (module doc). With ``cfg.secure_rng`` the clients are sampled over a CSPRNG order.
    """
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    random.seed(cfg.seed)
    model = build_fl_model(cfg)
    keys = list(model.state_dict().keys())
    dtypes = [v.dtype for v in model.state_dict().values()]
    test = fl_test_data(cfg)
    acct = accountant_of(cfg)
    records: list[RoundRecord] = []
    bar = tqdm(total=cfg.rounds, disable=not progress, desc="federated rounds (SecAgg+)", leave=False)
    clock = [time.perf_counter()]
    last = {"params": [v.numpy().copy() for v in model.state_dict().values()]}

    def evaluate_fn(server_round: int, params: list[np.ndarray], config: dict[str, Any]) -> tuple[float, dict]:
        if server_round > 0 and all(np.array_equal(a, b) for a, b in zip(params, last["params"], strict=True)):
            raise SecAggError(
                f"SecAgg+ round {server_round} produced no aggregate: too many clients dropped out "
                "(fewer than the reconstruction threshold answered within the timeout)."
            )
        last["params"] = [np.array(p).copy() for p in params]
        model.load_state_dict(_state(keys, params, dtypes))
        acc, loss = evaluate(model, test)
        if server_round > 0:
            eps = acct.step() if acct is not None else None
            now = time.perf_counter()
            records.append(
                RoundRecord(
                    server_round, acc, loss, eps,
                    None if cfg.dp is None else cfg.dp.clip_norm, now - clock[0],
                )
            )
            clock[0] = now
            bar.update(1)
        return loss, {"accuracy": acc}

    m, n = cfg.clients_per_round, cfg.num_clients
    strategy = _floor_fedavg(
        secagg_min_summed(cfg) if cfg.dp is not None else None,
        fraction_fit=m / n,
        fraction_evaluate=0.0,
        min_fit_clients=m,
        min_available_clients=n,
        initial_parameters=ndarrays_to_parameters(last["params"]),
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda rnd: {"server_round": rnd},
    )

    def main() -> None:
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=cfg.rounds), strategy=strategy,
            client_manager=_secure_client_manager() if cfg.secure_rng else None,
        )
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares,
                reconstruction_threshold=reconstruction_threshold,
                clipping_range=CLIPPING_RANGE,
                quantization_range=QUANTIZATION_RANGE,
                modulus_range=SECAGG_MODULUS,
                max_weight=1.0,  # every client weighs 1; a larger max_weight costs quantisation precision
                timeout=timeout,
            )
        )
        workflow(_GuardedGrid(grid), legacy)  # type: ignore[arg-type]  # duck-typed Grid

    try:
        main()
    finally:
        bar.close()
    return records, _state(keys, last["params"], dtypes)


def _state(keys: list[str], params: list[np.ndarray], dtypes: list[torch.dtype]) -> dict[str, torch.Tensor]:
    """Parameters back to a state dict in the model's own dtypes (SecAgg+ dequantises to float64)."""
    return {k: torch.from_numpy(np.array(p)).to(d) for k, p, d in zip(keys, params, dtypes, strict=True)}


def make_secagg_apps(
    cfg: FedConfig, holder: dict[str, Any], *, progress: bool = False, timeout: float = 120.0
) -> tuple[Any, Any]:
    """(ServerApp, ClientApp) for :func:`privlab.fl.run_federated` with ``cfg.secagg``."""
    from flwr.serverapp import ServerApp

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        try:
            holder["result"] = run_secagg_server(grid, context, cfg, progress=progress, timeout=timeout)
        except BaseException as exc:
            holder["error"] = exc
            raise

    return server_app, make_secagg_client_app(cfg)
