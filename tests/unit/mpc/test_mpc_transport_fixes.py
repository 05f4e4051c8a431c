"""Review fixes in the CLI's model fingerprint, the gloo framing, run_local's errors and MPCConfig."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from privlab.cli.mpc import model_fingerprint
from privlab.errors import InvalidParameterError, MPCError, MPCRangeError
from privlab.mpc.config import MAX_SECONDS, MPCConfig
from privlab.mpc.launch import run_local
from privlab.mpc.model import compile_model
from privlab.mpc.party import Party
from privlab.mpc.protocols import compare
from privlab.mpc.sharing import reveal, share
from privlab.mpc.transport.gloo import GlooTransport, Heartbeat, wait_work
from privlab.mpc.transport.limits import Limits

# --- finding 1: the fingerprint covers forward()'s constants, not the weights ---------------------


class Scaled(nn.Module):
    def __init__(self, scale: float, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 4)
        self.scale = scale  # a Python constant read in forward: not part of repr(module)
        self.offset = torch.full((4,), float(seed))  # a tensor constant: shared from the model owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)) * self.scale) + self.offset


def _fp(module: nn.Module) -> str:
    return model_fingerprint(compile_model(module, (2, 4)))


def test_fingerprint_differs_on_a_forward_constant_and_not_on_weights() -> None:
    a, b = Scaled(0.5), Scaled(2.0)
    assert repr(a) == repr(b)  # control: what the CLI used to hash cannot tell them apart
    assert _fp(a) != _fp(b)
    assert _fp(a) == _fp(Scaled(0.5))  # identical models agree
    other_weights = Scaled(0.5, seed=1)  # other weights and tensor-constant values: the owner's secret
    assert not torch.equal(other_weights.fc1.weight, a.fc1.weight)
    assert _fp(other_weights) == _fp(a)


def test_fingerprint_differs_on_layer_hyper_parameters_and_shapes() -> None:
    wide = Scaled(0.5)
    wide.fc2 = nn.Linear(8, 5)  # a parameter shape
    wide.offset = torch.zeros(5)
    assert _fp(wide) != _fp(Scaled(0.5))
    soft0 = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=0))
    soft1 = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    assert _fp(soft0) != _fp(soft1)
    assert _fp(soft1) == _fp(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)))


def test_fingerprint_holds_no_weight_value() -> None:
    """The digest's input never contains a tensor's values (it is sent to the other hosts)."""
    import hashlib

    seen: list[bytes] = []
    real = hashlib.sha256

    def spy(data: bytes = b"") -> object:
        seen.append(data)
        return real(data)

    model = Scaled(0.5)
    with torch.no_grad():
        model.fc1.weight.fill_(0.123456789)
    hashlib.sha256 = spy  # type: ignore[assignment]
    try:
        _fp(model)
    finally:
        hashlib.sha256 = real
    assert seen and all(b"0.1234" not in s for s in seen) and any(b"* 0.5" in s for s in seen)


# --- finding 2: gloo messages carry their length --------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import timedelta
    import torch, torch.distributed as dist
    from privlab.errors import MPCError
    from privlab.mpc.transport.gloo import GlooTransport, Heartbeat
    rank, port, sent, expected = (int(a) for a in sys.argv[1:5])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=20))
    t = GlooTransport(rank, 10.0, Heartbeat())
    out = {"rank": rank}
    try:
        if rank == 0:
            t.send(1, (torch.arange(sent) % 200 + 7).to(torch.uint8))
            t.recv(1, 1)
        else:
            out["got"] = t.recv(0, expected).tolist()
            t.send(0, torch.zeros(1, dtype=torch.uint8))
            t.close()
    except MPCError as e:
        out["error"] = str(e)
    print("JSON" + json.dumps(out), flush=True)
    """
)


def _gloo_pair(tmp_path: Path, sent: int, expected: int) -> dict[int, dict[str, object]]:
    from privlab.mpc.distributed import free_port

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), port, str(sent), str(expected)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        )
        for r in (0, 1)
    ]
    rows = {}
    try:
        for p in procs:
            out = p.communicate(timeout=60)[0]
            row = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("JSON")))
            rows[row["rank"]] = row
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return rows


@pytest.mark.multiprocess
def test_gloo_refuses_a_short_message_and_delivers_an_exact_one(tmp_path: Path) -> None:
    exact = _gloo_pair(tmp_path, 64, 64)  # control: an exact message arrives intact
    assert exact[1]["got"] == [(i % 200) + 7 for i in range(64)]
    short = _gloo_pair(tmp_path, 8, 64)  # used to be accepted, 56 bytes of uninitialised memory after it
    assert "got" not in short[1]
    assert "expected 64 bytes from rank 0, got 8; the parties ran different programs" in str(short[1]["error"])


def test_gloo_send_to_a_gone_peer_is_an_mpc_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import privlab.mpc.transport.gloo as gloo

    def closed(*_: object) -> None:
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(gloo.dist, "isend", closed)
    monkeypatch.setattr(gloo.dist, "irecv", closed)
    t = GlooTransport(0, 5.0, Heartbeat())
    with pytest.raises(MPCError, match=r"could not send a message to rank 1.*Connection closed"):
        t.send(1, torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(MPCError, match=r"could not recv a message from rank 1.*Connection closed"):
        t.recv(1, 4)


def test_a_wait_that_breaks_early_reports_its_real_length() -> None:
    class Broken:
        def wait(self, timeout: timedelta) -> None:
            raise RuntimeError("Connection closed by peer")

    with pytest.raises(MPCError) as err:
        wait_work(Broken(), Limits(30.0), "rank 0", 1, Heartbeat())  # type: ignore[arg-type]
    assert "rank 0 gave up after 0.0 s waiting for a message from rank 1, before MPCConfig.timeout (30.0 s" in str(
        err.value
    )
    assert "waited 30.0 s" not in str(err.value)
    # control: a wait that did last the timeout says so
    assert "party 0 waited 30.0 s for a message from rank 1" in str(Limits(30.0).timeout_error("party 0", 1, "", 30.0))


# --- findings 3 and 4: run_local reports the failing party's own error, and a stuck one ----------

_RELEASE = threading.Event()


def _faulty(party: Party, mode: str, victim: int) -> torch.Tensor:
    x = torch.linspace(-3, 3, 100, dtype=torch.float64)
    s = share(party, 1, x if party.rank == 1 else None, x.shape)
    if party.rank == victim and mode == "mpc_error":
        raise MPCError(f"injected: party {victim}'s own error")
    if party.rank == victim and mode == "range_error":
        raise MPCRangeError(f"injected: party {victim}'s range error")
    if party.rank == victim and mode == "stuck":
        _RELEASE.wait(60)  # stuck in its own work, not in a transport wait
    return reveal(party, compare.relu(party, s), to=1)


@pytest.mark.parametrize("victim", [0, 1])
@pytest.mark.parametrize("mode", ["mpc_error", "range_error"])
def test_run_local_raises_the_failing_party_s_own_error(mode: str, victim: int) -> None:
    """``mpc_error``: used to lose party 1's message; ``range_error`` (not an ``MPCError``): control."""
    args = (mode, victim)
    with pytest.raises((MPCError, MPCRangeError)) as err:
        run_local(_faulty, (args, args), MPCConfig(timeout=5))
    assert f"injected: party {victim}'s" in str(err.value), str(err.value)


def test_run_local_control_without_failure() -> None:
    res = run_local(_faulty, (("none", 0), ("none", 0)), MPCConfig(timeout=5))
    assert torch.allclose(res.outputs[1], torch.linspace(-3, 3, 100, dtype=torch.float64).relu(), atol=1e-3)


def test_run_local_blames_a_stuck_party_within_timeout_plus_slack() -> None:
    _RELEASE.clear()
    start = time.monotonic()
    try:
        with pytest.raises(MPCError) as err:
            run_local(_faulty, (("stuck", 0), ("stuck", 0)), MPCConfig(timeout=1.0), slack=1.0)
    finally:
        _RELEASE.set()  # let the stuck thread finish
    took = time.monotonic() - start
    assert took < 8.0, took  # party 1 times out after 1 s, party 0 is given 1 + 1 s more
    message = str(err.value)
    assert message.startswith("party 0 did not stop within 2.0 s") and "Party 1's error" in message
    assert isinstance(err.value.__cause__, MPCError)


# --- finding 6: MPCConfig stores Python values and caps its times ----------------------------------


def test_config_stores_python_numbers_from_numpy_scalars() -> None:
    cfg = MPCConfig(frac_bits=np.int64(16), cmp_bits=np.int64(40), timeout=np.float32(5), deadline=np.int32(9))
    assert type(cfg.frac_bits) is int and type(cfg.cmp_bits) is int
    assert type(cfg.timeout) is float and type(cfg.deadline) is float
    json.dumps(dataclasses.asdict(cfg))  # the handshake statement is JSON
    timedelta(seconds=cfg.timeout)  # gloo's timeout
    assert cfg == MPCConfig(timeout=5.0, deadline=9.0)


def test_config_caps_timeout_and_deadline() -> None:
    MPCConfig(timeout=MAX_SECONDS, deadline=MAX_SECONDS)  # control: the cap itself is accepted
    with pytest.raises(InvalidParameterError, match=r"'timeout' parameter of MPCConfig .* Got 10000000000\.0"):
        MPCConfig(timeout=1e10)
    with pytest.raises(InvalidParameterError, match="'deadline' parameter of MPCConfig"):
        MPCConfig(deadline=1e300)
