"""Running a federated config on Flower's simulation engine (virtual clients on Ray actors).

``run_federated(cfg)`` builds the ``ServerApp`` (:mod:`privlab.fl.server`) and ``ClientApp``
(:mod:`privlab.fl.client`), or the SecAgg+ pair (:mod:`privlab.fl.secagg`) when ``cfg.secagg``,
and runs them with ``flwr.simulation.run_simulation`` on ``num_actors`` Ray actors of one CPU each.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from privlab._json import jsonable
from privlab._validation import check_int
from privlab.fl.config import FedConfig
from privlab.fl.server import FederatedRunError, RoundRecord

FL_EXTRA_HINT = "pip install 'privlab[fl]'  (Flower with its Ray simulation engine, and torchmetrics)"

__all__ = ["FL_EXTRA_HINT", "FedResult", "FederatedRunError", "backend_config", "require_flwr", "run_federated"]


@dataclass(frozen=True)
class FedResult:
    """A finished federated run: the config, one record per round, z, and the final global state."""

    config: FedConfig
    rounds: tuple[RoundRecord, ...]
    noise_multiplier: float | None
    seconds: float
    state: dict[str, torch.Tensor] = field(repr=False, compare=False)

    @property
    def accuracy(self) -> float:
        return self.rounds[-1].accuracy

    @property
    def epsilon(self) -> float | None:
        return self.rounds[-1].epsilon

    def published_rounds(self) -> list[dict[str, Any]]:
        """The per-round records as published (result JSON, report).

        Under Poisson client sampling a round's wall time grows with the number of clients that
        joined, which the fixed denominator keeps out of the released model (and out of the
        accountant's bound), so per-round ``seconds`` are left out (None); the run's total stays.
        """
        hide = self.config.sampling == "poisson"
        return [{**vars(r), "seconds": None} if hide else dict(vars(r)) for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(
            {
                "config": self.config.to_dict(),
                "client_sampling": self.config.sampling,
                "noise_multiplier": self.noise_multiplier,
                "seconds": self.seconds,
                "final_accuracy": self.accuracy,
                "final_epsilon": self.epsilon,
                "rounds": self.published_rounds(),
            }
        )
        return out


def require_flwr() -> None:
    """Raise an ImportError naming the extra when Flower is missing."""
    try:
        import flwr  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"privlab.fl needs Flower: {FL_EXTRA_HINT}") from exc


def backend_config(num_actors: int) -> dict[str, Any]:
    """Ray backend: ``num_actors`` CPUs, one per client actor, no GPU, no dashboard."""
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": num_actors, "num_gpus": 0, "include_dashboard": False, "log_to_driver": False},
    }


def run_federated(
    cfg: FedConfig, *, progress: bool = False, num_actors: int = 2, verbose: bool = False, timeout: float = 600.0
) -> FedResult:
    """Run ``cfg`` in Flower's simulation engine and return the per-round records and final model state."""
    require_flwr()
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from privlab.fl.client import make_client_app
    from privlab.fl.privacy import noise_multiplier_of
    from privlab.fl.server import run_server

    check_int(num_actors, "num_actors", "run_federated", low=1)
    holder: dict[str, Any] = {}
    if cfg.secagg:
        from privlab.fl.secagg import make_secagg_apps

        server_app, client_app = make_secagg_apps(cfg, holder, progress=progress, timeout=timeout)
    else:
        server_app = ServerApp()
        client_app = make_client_app(cfg)

        @server_app.main()
        def main(grid: Grid, context: Any) -> None:
            try:
                holder["result"] = run_server(grid, cfg, progress=progress, timeout=timeout)
            except BaseException as exc:
                holder["error"] = exc
                raise

    _quiet_flower(verbose)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    t0 = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=cfg.num_clients,
        backend_config=backend_config(num_actors),
        verbose_logging=verbose,
    )
    seconds = time.perf_counter() - t0
    if "error" in holder:
        raise FederatedRunError(f"The federated run failed on the server: {holder['error']!r}") from holder["error"]
    if "result" not in holder:
        raise FederatedRunError("The federated run ended without a result (the simulation engine stopped early).")
    records, state = holder["result"]
    if len(records) != cfg.rounds:
        raise FederatedRunError(f"The federated run finished {len(records)} of {cfg.rounds} rounds.")
    z = noise_multiplier_of(cfg) if cfg.dp is not None else None
    return FedResult(cfg, tuple(records), z, seconds, state)


def _quiet_flower(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.getLogger("flwr").setLevel(level)
