"""The Flower app that a deployment runs: module-level ``server_app`` and ``client_app``.

A deployed Flower app is named by ``module:attribute`` in its ``pyproject.toml`` and loaded by
Flower's SuperExec in its own process, so the apps cannot close over a Python config object as the
simulation does. They read it from the run config instead:

* ``privlab-config``: the :class:`~privlab.fl.config.FedConfig` as JSON;
* ``round-timeout``: seconds the server waits for a round's replies (then the run fails);
* ``result-dir``: where the server writes ``records.json`` and ``state.pt`` when the run ends, or
  ``error.json`` when it fails (the launching process reads them; see :mod:`privlab.fl.deploy`).

The server's body is :func:`privlab.fl.server.run_server`, the same as in simulation, and the
client's is :func:`privlab.fl.client.train_client` through :func:`~privlab.fl.client.make_client_app`.
A config with ``secagg=True`` is refused (``run_server`` raises; the failure lands in ``error.json``):
this app aggregates in the clear, and SecAgg+ runs only in simulation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from privlab.fl.client import fed_config_from_json, make_client_app
from privlab.fl.server import run_server

RESULT_FILES = ("records.json", "state.pt")
ERROR_FILE = "error.json"

client_app = make_client_app(None)
server_app = ServerApp()


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    write(tmp)
    os.replace(tmp, path)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    conf = context.run_config
    out = Path(str(conf["result-dir"]))
    try:
        cfg = fed_config_from_json(str(conf["privlab-config"]))
        records, state = run_server(grid, cfg, timeout=float(conf["round-timeout"]))  # type: ignore[arg-type]
    except BaseException as exc:
        text = json.dumps({"error": repr(exc)})
        _write_atomic(out / ERROR_FILE, lambda p: p.write_text(text))
        raise
    _write_atomic(out / "state.pt", lambda p: torch.save(state, p))
    _write_atomic(out / "records.json", lambda p: p.write_text(json.dumps([vars(r) for r in records])))
