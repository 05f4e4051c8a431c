"""The start-of-run handshake: ranks that disagree on the protocol stop at once, naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import privlab
from privlab.errors import MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.distributed import free_port
from privlab.mpc.handshake import STATEMENT_BYTES, decode, disagreements, encode, statement


def test_statement_round_trips_and_compares_equal_to_itself() -> None:
    mine = statement(MPCConfig(), "privlab.mpc.inference:infer_task", {"input_shape": (2, 1, 28, 28)})
    buf = encode(mine)
    assert buf.numel() == STATEMENT_BYTES
    back = decode(buf, 1)
    assert back == mine and back["privlab"] == privlab.__version__
    assert disagreements(mine, 0, {1: back, 2: back}) == []  # negative control: same config, no complaint


def test_each_message_shaping_field_is_caught_and_host_limits_are_not() -> None:
    base = statement(MPCConfig())
    for change in ({"cmp_tree": (2, 2, 2)}, {"cmp_bits": 36}, {"frac_bits": 12}, {"range_checks": False}):
        other = statement(MPCConfig(**change))  # type: ignore[arg-type]
        lines = disagreements(base, 0, {2: other})
        (key,) = change
        assert len(lines) == 1 and lines[0].startswith(f"{key}: rank 0 has") and "rank 2 has" in lines[0]
    # each host's own time limits are not part of the agreement
    assert disagreements(base, 0, {1: statement(MPCConfig(timeout=5.0, deadline=100.0))}) == []


def test_fields_one_rank_does_not_state_are_not_compared() -> None:
    party = statement(MPCConfig(), "pkg:task", {"model": "cnn"})
    dealer = statement(MPCConfig())  # the dealer runs no task
    assert disagreements(party, 0, {2: dealer}) == []
    assert disagreements(party, 0, {1: statement(MPCConfig(), "pkg:task", {"model": "mlp"})}) == [
        "model: rank 0 has 'cnn', rank 1 has 'mlp'"
    ]


def test_long_public_values_travel_as_a_digest_and_still_differ() -> None:
    a = statement(MPCConfig(), public={"architecture": "x" * 5000})
    b = statement(MPCConfig(), public={"architecture": "x" * 4999 + "y"})
    assert a["architecture"].startswith("sha256:") and encode(a).numel() == STATEMENT_BYTES
    assert len(disagreements(a, 0, {1: b})) == 1


def test_bad_statements_are_refused() -> None:
    with pytest.raises(MPCError, match="clashes with a built-in field"):
        statement(MPCConfig(), public={"cmp_tree": [2, 2]})
    with pytest.raises(MPCError, match="more than 1024"):
        encode({f"k{i}": "v" * 60 for i in range(30)})
    seeds = torch.zeros(STATEMENT_BYTES, dtype=torch.uint8)
    seeds[:8] = torch.tensor([12345], dtype=torch.int64).view(torch.uint8)  # what an old host sends first
    with pytest.raises(MPCError, match="rank 2 did not open the run with an agreement statement"):
        decode(seeds, 2)


def _party_cmd(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "privlab.cli.main", "mpc", "party", "--model", "mlp", "--batch", "2",
            "--timeout", "60", *extra]


@pytest.mark.multiprocess
def test_hosts_with_different_comparison_trees_stop_at_once_naming_the_field() -> None:
    """Three `privlab mpc party` hosts, one started with another tree: every host fails in seconds
    (far below the 60 s timeout at which a mismatch used to surface), naming cmp_tree."""
    port = free_port()
    procs = []
    start = time.monotonic()
    for rank in (0, 1, 2):
        env = {**os.environ, "RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        extra = ["--cmp-tree", "2,2,2"] if rank == 1 else []
        procs.append(subprocess.Popen(_party_cmd(extra), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.monotonic() - start
    assert [p.returncode for p in procs] == [2, 2, 2], outs  # "error: ...", not a traceback
    assert elapsed < 45, f"the mismatch took {elapsed:.0f} s to surface"
    for rank, (_, err) in enumerate(outs):
        assert "error: MPC run refused" in err and "cmp_tree" in err, (rank, err[-800:])
        assert "Traceback" not in err
    assert "rank 1 has [2, 2, 2]" in outs[0][1]
