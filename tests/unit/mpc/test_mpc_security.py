"""What party 1 receives during a ReLU does not depend on the secret (statistical checks with
negative controls; thresholds are 99.9% quantiles, checked on seeds 0-19)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privlab.mpc.encoding import encode
from privlab.mpc.launch import Seeds, run_local
from privlab.mpc.protocols import arith, compare
from privlab.mpc.tasks import eval_task
from privlab.mpc.transport.local import LocalTransport

N = 20_000
CHI2_255 = 330.0  # 99.9% quantile of chi-square with 255 degrees of freedom


def _chi2_top_byte(t: torch.Tensor) -> float:
    top = torch.bitwise_and(torch.bitwise_right_shift(t, 56), 255)
    counts = torch.bincount(top, minlength=256).double()
    expected = t.numel() / 256
    return float(((counts - expected) ** 2 / expected).sum())


def _opened(x: torch.Tensor, monkeypatch: pytest.MonkeyPatch, seed: int, fn=compare.relu) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Party 1's view while both compute relu(x) (x owned by party 0): for every exchange, the
    buffer it received and the one it sent (their sum or XOR is the opened value)."""
    got: list[torch.Tensor] = []
    sent: list[torch.Tensor] = []
    recv, send = LocalTransport.recv, LocalTransport.send

    def recording_recv(self: LocalTransport, src: int, nbytes: int) -> torch.Tensor:
        buf = recv(self, src, nbytes)
        if self.rank == 1:
            got.append(buf.clone())
        return buf

    def recording_send(self: LocalTransport, dst: int, buf: torch.Tensor) -> None:
        if self.rank == 1:
            sent.append(buf.clone())
        send(self, dst, buf)

    monkeypatch.setattr(LocalTransport, "recv", recording_recv)
    monkeypatch.setattr(LocalTransport, "send", recording_send)
    args = (fn, [x], 1, False)
    g = torch.Generator().manual_seed(seed)
    seeds = Seeds(*(int(v) for v in torch.randint(0, 2**62, (3,), generator=g)))
    run_local(eval_task, (args, args), seeds=seeds)
    return [torch.stack([a, b]) for a, b in zip(got, sent, strict=True)]


@pytest.mark.parametrize("secret", [0.0, 1e6])
def test_opened_mask_and_bit_are_uniform_whatever_the_secret(secret: float, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = torch.full((N,), secret, dtype=torch.float64)
    view = _opened(x, monkeypatch, seed=0)  # opening of c, 3 AND layers, e, then the reveal
    got, sent = view[0]
    c = got.view(torch.int64) + sent.view(torch.int64)  # the opened c = x + 2^(l-1) + r
    assert c.numel() == N
    assert _chi2_top_byte(c) < CHI2_255
    got, sent = view[4]  # after c and the 3 AND layers (the range check and the reveal follow)
    e = np.unpackbits((got ^ sent).numpy())[:N]  # the opened e = [x >= 0] XOR t
    assert abs(float(e.sum()) - N / 2) < 4 * (N / 4) ** 0.5  # binomial(N, 1/2) within 4 sigma


def test_negative_control_unmasked_values_are_not_uniform() -> None:
    x = torch.full((N,), 1e6, dtype=torch.float64)
    assert _chi2_top_byte(encode(x, 16)) > CHI2_255  # the secret itself, if it were sent
    bits = (x >= 0).double()
    assert abs(float(bits.sum()) - N / 2) > 4 * (N / 4) ** 0.5  # the bit itself, unmasked


@pytest.mark.parametrize("secret", [0.0, 3e3])
def test_folded_truncation_opening_is_uniform_whatever_the_secret(secret: float, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """x * x with the truncation folded into the triple: the second opening is x^2 + r + 2^62 with
    the dealer-built mask r (``material.trunc_mask``), uniform for any secret (the negative control
    above shows the same statistic rejects an unmasked value)."""
    x = torch.full((N,), secret, dtype=torch.float64)
    view = _opened(x, monkeypatch, seed=1, fn=lambda p, a: arith.mul(p, a, a))
    got, sent = view[1]  # after the Beaver opening of (e, d)
    c = got.view(torch.int64) + sent.view(torch.int64)
    assert c.numel() == N
    assert _chi2_top_byte(c) < CHI2_255
