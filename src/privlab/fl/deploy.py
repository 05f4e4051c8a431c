"""Flower as real processes on one host: a SuperLink, one SuperNode per client, and ``flwr run``.

The simulation engine (:mod:`privlab.fl.simulation`) runs virtual clients on Ray actors; this
module runs the same config the way a deployment does, each role a separate OS process talking
over Flower's HTTP APIs on 127.0.0.1:

    flower-superlink --insecure --port P            # the server side; spawns the ServerApp
    flower-supernode --insecure --superlink 127.0.0.1:P --port Q_i --node-config "partition-id=i ..."
    flwr run <app dir> <connection>                  # submits the app (a FAB) to the SuperLink

``FlowerDeployment`` writes the app directory (``pyproject.toml`` naming
:mod:`privlab.fl.flower_app`'s apps, the config in ``[tool.flwr.app.config]``) and a private
``FLWR_HOME`` with the SuperLink connection, starts the processes, submits the run and waits for
the server's result files. Every wait has a deadline: a SuperNode that dies makes the round fail
after ``round_timeout`` (:class:`~privlab.fl.server.StrictGrid`), a SuperLink that dies or a run
that outlives ``timeout`` ends in :class:`FederatedRunError`, and all processes are killed on exit.

    with FlowerDeployment(cfg) as dep:
        result = dep.run()            # a FedResult, like run_federated(cfg)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from privlab._validation import check_real
from privlab.errors import InvalidParameterError
from privlab.fl.config import FedConfig
from privlab.fl.flower_app import ERROR_FILE
from privlab.fl.server import FederatedRunError, RoundRecord
from privlab.fl.simulation import FedResult, require_flwr

CONNECTION = "privlab-local"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


class FlowerDeployment:
    """A SuperLink and ``cfg.num_clients`` SuperNodes as local processes, for one or more runs.

    ``round_timeout``: seconds the server waits for a round's replies before failing the run;
    ``timeout``: seconds :meth:`run` waits for the whole run; ``startup_timeout``: seconds to wait
    for every SuperNode to register with the SuperLink.
    """

    def __init__(
        self,
        cfg: FedConfig,
        *,
        round_timeout: float = 120.0,
        timeout: float = 900.0,
        startup_timeout: float = 120.0,
        workdir: str | Path | None = None,
    ) -> None:
        require_flwr()
        owner = "FlowerDeployment"
        if cfg.secagg:
            # flower_app's ServerApp is run_server (FedAvg in the clear): SecAgg+ is not wired for
            # deployment, and running anyway would hand the server every model while reporting SecAgg+.
            raise InvalidParameterError(
                f"The 'secagg' parameter of the FedConfig given to {owner} must be False: the deployed app "
                "aggregates in the clear (SecAgg+ runs only in simulation, privlab.fl.run_federated). Got secagg=True."
            )
        self.cfg = cfg
        self.round_timeout = check_real(round_timeout, "round_timeout", owner, low=0.0, low_open=True)
        self.timeout = check_real(timeout, "timeout", owner, low=0.0, low_open=True)
        self.startup_timeout = check_real(startup_timeout, "startup_timeout", owner, low=0.0, low_open=True)
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="privlab-flower-")) if workdir is None else Path(workdir)
        self.superlink: subprocess.Popen[bytes] | None = None
        self.supernodes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self._runs = 0

    # -- processes ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)  # flower-superexec is spawned by name
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env["FLWR_HOME"] = str(self.dir / "flwr-home")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        exe = str(Path(sys.executable).parent / args[0])
        return subprocess.Popen(
            [exe, *args[1:]], stdout=log, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True
        )

    def start(self) -> FlowerDeployment:
        """Start the SuperLink and the SuperNodes; return once every node has registered."""
        self.port = free_port()
        home = self.dir / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self.superlink = self._spawn(
            "superlink",
            ["flower-superlink", "--insecure", "--port", str(self.port), "--database", ":flwr-in-memory:",
             "--disable-runtime-dependency-installation"],
        )
        n = self.cfg.num_clients
        for i in range(n):
            self.supernodes.append(
                self._spawn(
                    f"supernode{i}",
                    ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                     "--port", str(free_port()), "--node-config", f"partition-id={i} num-partitions={n}"],
                )
            )
        self._wait_registered(n)
        return self

    def _wait_registered(self, n: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        registered, tail = 0, b""
        with open(self.dir / "superlink.log", "rb") as log:  # read as it grows, not again from the start
            while time.monotonic() < deadline:
                self._check_superlink()
                dead = [i for i, p in enumerate(self.supernodes) if p.poll() is not None]
                if dead:
                    raise FederatedRunError(
                        f"SuperNode(s) {dead} exited during start-up; see {self.dir}/supernode*.log"
                    )
                lines = (tail + log.read()).split(b"\n")
                tail = lines.pop()  # a line the SuperLink has not finished writing
                registered += sum(b'activate-node HTTP/1.1" 200' in line for line in lines)
                if registered >= n:
                    return
                time.sleep(0.5)
        raise FederatedRunError(
            f"Not all {n} SuperNodes registered with the SuperLink within startup_timeout="
            f"{self.startup_timeout} s; see {self.dir}/*.log"
        )

    def _check_superlink(self) -> None:
        if self.superlink is None:
            raise FederatedRunError("The deployment is not started: call start() or use it as a context manager.")
        if self.superlink.poll() is not None:
            raise FederatedRunError(
                f"The SuperLink exited with code {self.superlink.returncode}; see {self.dir}/superlink.log"
            )

    def kill_supernode(self, i: int) -> None:
        """Kill SuperNode ``i`` and the ClientApp processes it started (SIGKILL to its process group)."""
        p = self.supernodes[i]
        _kill_tree(p)

    # -- runs --------------------------------------------------------------------------------
    def write_app(self, result_dir: Path, round_timeout: float) -> Path:
        """The Flower app directory for one run of ``cfg`` (a ``pyproject.toml`` and nothing else)."""
        app = self.dir / f"app{self._runs}"
        app.mkdir(parents=True, exist_ok=True)
        (app / "pyproject.toml").write_text(
            "[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n\n"
            f"[project]\nname = \"privlab-fedavg\"\nversion = \"1.0.0\"\n"
            "description = \"privlab FedAvg (generated)\"\nlicense = \"Apache-2.0\"\n\n"
            "[tool.flwr.app]\npublisher = \"privlab\"\n\n"
            "[tool.flwr.app.components]\n"
            "serverapp = \"privlab.fl.flower_app:server_app\"\nclientapp = \"privlab.fl.flower_app:client_app\"\n\n"
            "[tool.flwr.app.config]\n"
            f"privlab-config = {_toml_str(json.dumps(self.cfg.to_dict(), sort_keys=True))}\n"
            f"round-timeout = {float(round_timeout)!r}\n"
            f"result-dir = {_toml_str(str(result_dir))}\n"
        )
        return app

    def run(self, round_timeout: float | None = None) -> FedResult:
        """Submit one run with ``flwr run`` and wait for the server's result; raise on any failure.

        ``round_timeout`` overrides the deployment's for this run.
        """
        self._check_superlink()
        rt = self.round_timeout if round_timeout is None else check_real(
            round_timeout, "round_timeout", "FlowerDeployment.run", low=0.0, low_open=True
        )
        result_dir = self.dir / f"result{self._runs}"
        result_dir.mkdir(parents=True, exist_ok=True)
        app = self.write_app(result_dir, rt)
        self._runs += 1
        flwr = str(Path(sys.executable).parent / "flwr")
        t0 = time.perf_counter()
        sub = subprocess.run(
            [flwr, "run", str(app), CONNECTION], env=self._env(), capture_output=True, text=True, timeout=120
        )
        if sub.returncode != 0:
            tail = (sub.stdout + sub.stderr)[-2000:]
            raise FederatedRunError(f"'flwr run' failed with code {sub.returncode}: {tail}")
        deadline = time.monotonic() + self.timeout
        records_path = result_dir / "records.json"
        while not records_path.exists():
            if (result_dir / ERROR_FILE).exists():
                err = json.loads((result_dir / ERROR_FILE).read_text())["error"]
                raise FederatedRunError(f"The federated run failed on the server: {err}")
            self._check_superlink()
            if time.monotonic() > deadline:
                raise FederatedRunError(
                    f"The federated run did not finish within timeout={self.timeout} s; see {self.dir}/*.log"
                )
            time.sleep(0.5)
        seconds = time.perf_counter() - t0
        records = tuple(RoundRecord(**r) for r in json.loads(records_path.read_text()))
        state = torch.load(result_dir / "state.pt", weights_only=True)
        if len(records) != self.cfg.rounds:
            raise FederatedRunError(f"The federated run finished {len(records)} of {self.cfg.rounds} rounds.")
        from privlab.fl.privacy import noise_multiplier_of

        z = noise_multiplier_of(self.cfg) if self.cfg.dp is not None else None
        return FedResult(self.cfg, records, z, seconds, state)

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every process of the deployment and remove its directory (if it made one)."""
        for p in [*self.supernodes, *([self.superlink] if self.superlink else [])]:
            _kill_tree(p)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FlowerDeployment:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _kill_tree(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``p``, its process group and any process that names it as ``--parent-pid``.

    Flower's SuperLink starts its SuperExec in a new session, so the group alone misses it; the
    SuperExec carries ``--parent-pid <pid>`` on its command line, which finds it.
    """
    import psutil

    victims: list[Any] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "--parent-pid" in cmd and str(p.pid) in cmd:
            victims.append(proc)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    for proc in victims:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not fail; do not wait forever
        p.wait(timeout=10)
