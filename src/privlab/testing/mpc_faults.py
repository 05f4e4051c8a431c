"""Importable MPC party functions that fail on purpose (spawned party processes can only run what
they can import): the launcher's fault tests use them."""

from __future__ import annotations

import time

import torch

from privlab.mpc.party import Party


def fail_on_party0_hang_on_party1(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Party 0 raises at once; party 1 hangs in its own work (not in a message wait) for two minutes."""
    if party.rank == 0:
        raise RuntimeError("party 0 fails on purpose")
    time.sleep(120.0)
    return x
