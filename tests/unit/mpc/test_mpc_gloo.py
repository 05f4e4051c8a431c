"""Real processes over torch.distributed gloo on 127.0.0.1: protocols, a model, and failures."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from privlab.errors import MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.demos import demo_model
from privlab.mpc.distributed import free_port, run_processes
from privlab.mpc.inference import private_inference
from privlab.mpc.tasks import eval_task

pytestmark = pytest.mark.multiprocess


def test_protocols_over_gloo_match_plaintext_and_count_like_local() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=g, dtype=torch.float64) * 50
    y = torch.randn(300, generator=g, dtype=torch.float64)
    args = ("privlab.mpc.protocols.arith:mul", [x, y], 1, True)
    res = run_processes(eval_task, (args, args), MPCConfig(timeout=30))
    assert torch.allclose(res.outputs[0], x * y, atol=1e-2)
    relu = ("privlab.mpc.protocols.compare:relu", [x], 1, True)
    res = run_processes(eval_task, (relu, relu), MPCConfig(timeout=30))
    assert torch.allclose(res.outputs[1], x.relu(), atol=2.0**-16)
    assert res.stats.per_op["op"].rounds == 5
    assert res.stats.dealer_bytes > 0


def test_private_inference_over_gloo() -> None:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    res = private_inference(demo_model("cnn"), x, MPCConfig(timeout=30), transport="gloo")
    assert res.argmax_agreement == 1.0
    assert res.max_abs_error < 1e-3


@pytest.mark.parametrize("victim", [0, 2], ids=["party0", "dealer"])
def test_killed_party_or_dealer_makes_the_others_fail_within_the_timeout(victim: int) -> None:
    timeout, slack = 6.0, 20.0
    x = torch.randn(2000, dtype=torch.float64)
    args = ("privlab.mpc.protocols.nonlinear:sigmoid", [x], 10_000, True)  # minutes of work
    killed_at: list[float] = []

    def kill_party0_soon(procs: list) -> None:  # type: ignore[type-arg]
        def kill() -> None:
            time.sleep(8.0)  # well into the computation (start-up takes a few seconds)
            procs[victim].kill()
            killed_at.append(time.monotonic())

        threading.Thread(target=kill, daemon=True).start()

    with pytest.raises(MPCError) as err:
        run_processes(eval_task, (args, args), MPCConfig(timeout=timeout), port=free_port(),
                      slack=slack, on_started=kill_party0_soon)
    assert killed_at, "the run ended before the party was killed"
    assert time.monotonic() - killed_at[0] < timeout + slack
    assert "rank 1" in str(err.value)  # the surviving party 1 reported its own failure


def test_per_host_launch_from_environment_variables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`privlab mpc party` as it runs on three hosts: rank and rendezvous from RANK/MASTER_*, the
    model owner's weights and the data owner's input from files, the logits saved by the data owner."""
    import json
    import os
    import subprocess
    import sys

    model = demo_model("mlp")
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(-1.5)  # weights no freshly built demo model has
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    torch.save(x, tmp_path / "x.pt")
    files = {0: ["--weights", str(tmp_path / "w.pt")],
             1: ["--input", str(tmp_path / "x.pt"), "--output", str(tmp_path / "y.pt")], 2: []}
    port = free_port()
    procs = []
    for rank in (0, 1, 2):
        env = {**os.environ, "RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "privlab.cli.main", "mpc", "party", "--model", "mlp",
               "--batch", "2", "--timeout", "60", *files[rank]]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    r0, r1 = (json.loads(o.strip().splitlines()[-1]) for o in outs[:2])
    assert r0["prediction"] is None  # the model owner learns nothing
    assert len(r1["prediction"]) == 2 and r1["rounds"] == r0["rounds"] == 17
    assert outs[2].strip().endswith("dealer finished")
    y = torch.load(tmp_path / "y.pt", weights_only=True)
    with torch.no_grad():
        want, fresh = model(x), demo_model("mlp")(x)
    assert torch.allclose(y.to(want.dtype), want, atol=1e-2), (y, want)
    assert not torch.allclose(want, fresh, atol=1e-1)  # control: the file's weights were the ones used
