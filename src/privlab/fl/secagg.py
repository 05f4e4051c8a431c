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
:class:`~privlab.fl.simulation.FederatedRunError`, never hangs.
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
from privlab.fl.client import build_fl_model, fl_test_data, train_client
from privlab.fl.config import FedConfig
from privlab.fl.privacy import UserLevelAccountant, noise_multiplier_of
from privlab.fl.server import RoundRecord, evaluate

# Model parameters are clipped to [-8, 8] and quantised to 2^22 levels before masking (Flower's defaults).
CLIPPING_RANGE = 8.0
QUANTIZATION_RANGE = 2**22


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
            return [new[k].numpy() for k in keys], 1, {}

    def client_fn(context: Any) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def run_secagg_server(
    grid: Any,
    context: Any,
    cfg: FedConfig,
    *,
    progress: bool = False,
    timeout: float = 120.0,
    num_shares: float = 1.0,
    reconstruction_threshold: float = 0.5,
) -> tuple[list[RoundRecord], dict[str, torch.Tensor]]:
    """FedAvg rounds whose aggregation is SecAgg+ (the server only ever sees masked vectors).

    ``num_shares`` and ``reconstruction_threshold`` are fractions of the sampled clients; every
    protocol stage times out after ``timeout`` seconds.
    """
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    random.seed(cfg.seed)
    model = build_fl_model(cfg)
    keys = list(model.state_dict().keys())
    dtypes = [v.dtype for v in model.state_dict().values()]
    test = fl_test_data(cfg)
    acct = None
    if cfg.dp is not None:
        acct = UserLevelAccountant(
            cfg.num_clients, cfg.clients_per_round, noise_multiplier_of(cfg), cfg.dp.delta, cfg.dp.accountant
        )
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
                    server_round, acc, loss, eps, acct.epsilon_fixed_size() if acct else None,
                    None if cfg.dp is None else cfg.dp.clip_norm, now - clock[0],
                )
            )
            clock[0] = now
            bar.update(1)
        return loss, {"accuracy": acc}

    m, n = cfg.clients_per_round, cfg.num_clients
    strategy = FedAvg(
        fraction_fit=m / n,
        fraction_evaluate=0.0,
        min_fit_clients=m,
        min_available_clients=n,
        initial_parameters=ndarrays_to_parameters(last["params"]),
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda rnd: {"server_round": rnd},
    )

    def main() -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=cfg.rounds), strategy=strategy)
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=num_shares,
                reconstruction_threshold=reconstruction_threshold,
                clipping_range=CLIPPING_RANGE,
                quantization_range=QUANTIZATION_RANGE,
                max_weight=1.0,  # every client weighs 1; a larger max_weight costs quantisation precision
                timeout=timeout,
            )
        )
        workflow(grid, legacy)

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
