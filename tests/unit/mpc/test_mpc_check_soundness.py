"""The runtime range checks cannot be fooled (each case returned a wrong value without an error
before its fix), the ties of argmax, and the named errors of bad public inputs.

Every refusal has a control: a value inside the range, through the same path, is revealed and right.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from privlab.errors import InvalidParameterError, MPCRangeError
from privlab.mpc import MPCConfig, private_inference, reveal, run_local, share
from privlab.mpc.protocols import arith, compare
from privlab.mpc.protocols import nonlinear as nl


def _sum_then(fn, party, a, b):  # type: ignore[no-untyped-def]
    return fn(party, a + b)


@pytest.mark.parametrize(("name", "fn"), [("relu", compare.relu), ("sigmoid", nl.sigmoid),
                                          ("reciprocal", nl.reciprocal)])
def test_a_value_near_the_ring_edge_is_refused_not_wrapped(shared_eval, name, fn) -> None:  # type: ignore[no-untyped-def]
    """|x| in [2^45, 2^46): a 62-bit check read it modulo 2^62 as a small number (relu gave -7e13)."""
    with pytest.raises(MPCRangeError, match=rf"privlab\.mpc\.{name}: 1 of 2"):
        shared_eval(fn, torch.tensor([-(2.0**46 - 1), 1.0], dtype=torch.float64))
    # the same edge value reached by a sum of two valid shares
    with pytest.raises(MPCRangeError, match=rf"privlab\.mpc\.{name}"):
        shared_eval(functools.partial(_sum_then, fn), torch.tensor([-(2.0**45)], dtype=torch.float64),
                    torch.tensor([-(2.0**45 - 1)], dtype=torch.float64))
    out, _ = shared_eval(fn, torch.tensor([2.0, 1.0], dtype=torch.float64))  # control
    assert torch.allclose(out, {"relu": torch.relu, "sigmoid": torch.sigmoid,
                                "reciprocal": torch.reciprocal}[name](torch.tensor([2.0, 1.0], dtype=torch.float64)),
                          atol=3e-3)


@pytest.mark.parametrize("a", [2.0**27 + 1.0, 2.0**30])
def test_a_product_of_large_operands_is_refused_even_where_the_shadow_product_wraps(shared_eval, a) -> None:  # type: ignore[no-untyped-def]
    """mul(2^27, 2^27) and mul(2^30, 2^30) were revealed as 0: the check's own shadow wrapped."""
    x = torch.tensor([a], dtype=torch.float64)
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.mul: .*an operand reaches 2\^27"):
        shared_eval(arith.mul, x, x)
    out, _ = shared_eval(arith.mul, torch.tensor([2.0**14], dtype=torch.float64),
                         torch.tensor([2.0**14], dtype=torch.float64))  # control: 2^28 < 0.75 * 2^30
    assert out.item() == 2.0**28


def test_a_matmul_bounds_its_operands_by_the_inner_size(shared_eval) -> None:  # type: ignore[no-untyped-def]
    """Over an inner size of 784 the operands must stay below 2^22 (the message says so)."""
    x = torch.zeros(1, 784, dtype=torch.float64)
    w = torch.zeros(784, 2, dtype=torch.float64)
    x[0, 0] = 2.0**23  # the product x @ w is 0: refused for the operand alone
    with pytest.raises(MPCRangeError, match=r"an operand reaches 2\^22 .* inner size of 784"):
        shared_eval(arith.matmul, x, w)
    x[0, 0] = 2.0**21
    out, _ = shared_eval(arith.matmul, x, w)
    assert torch.equal(out, torch.zeros(1, 2, dtype=torch.float64))


@pytest.mark.parametrize(("x", "config", "clamp"), [
    (-8388908.0, None, True),  # below the clamp's comparison range: was -3.4e4
    (-800.0, MPCConfig(cmp_bits=26), True),  # the same under a narrow cmp_bits: was 2.3e4
    (8.0, MPCConfig(frac_bits=18), False),  # the last square wraps above (62 - 2 (f + n)) ln 2: was -1119
    (6.0, MPCConfig(frac_bits=20), False),  # was -108.8
])
def test_exp_outside_its_ring_limits_is_refused(shared_eval, x, config, clamp) -> None:  # type: ignore[no-untyped-def]
    fn = functools.partial(nl.exp, clamp=clamp)
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.exp: 1 of 2"):
        shared_eval(fn, torch.tensor([x, 1.0], dtype=torch.float64), config=config)
    inside = torch.tensor([-700.0 if clamp else 2.0, 1.0], dtype=torch.float64)  # control
    out, _ = shared_eval(fn, inside, config=config)
    assert torch.allclose(out, torch.exp(inside), rtol=5e-3, atol=5e-3)


def test_exp_with_no_room_in_the_ring_is_a_named_error(shared_eval) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match="'iters' parameter of exp"):
        shared_eval(functools.partial(nl.exp, iters=24), torch.tensor([1.0], dtype=torch.float64))


@pytest.mark.parametrize("f", [12, 13])
@pytest.mark.parametrize("fn", [nl.reciprocal, nl.rsqrt])
def test_zero_is_refused_by_a_reciprocal_at_low_precision(shared_eval, f, fn) -> None:  # type: ignore[no-untyped-def]
    """At f <= 13 the lower end 2^-14 encoded to 0, so x = 0 passed (reciprocal(0) gave 92682)."""
    cfg = MPCConfig(frac_bits=f)
    with pytest.raises(MPCRangeError, match="1 of 2 input values"):
        shared_eval(fn, torch.tensor([0.0, 1.0], dtype=torch.float64), config=cfg)
    out, _ = shared_eval(fn, torch.tensor([0.5, 1.0], dtype=torch.float64), config=cfg)  # control
    ref = 1 / torch.tensor([0.5, 1.0]) if fn is nl.reciprocal else torch.rsqrt(torch.tensor([0.5, 1.0]))
    assert torch.allclose(out.float(), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("row", [[1.0, 3.0, 3.0, 2.0, 3.0], [2.0, 0.0, 9.0, 9.0, 0.0, 0.0, 0.0],
                                 [0.0, 5.0, 5.0, 1.0, 0.0, 0.0], [4.0, 4.0, 4.0, 4.0]])
def test_argmax_breaks_ties_at_the_lowest_index_as_torch_does(shared_eval, row) -> None:  # type: ignore[no-untyped-def]
    x = torch.tensor([row], dtype=torch.float64)
    out, _ = shared_eval(compare.argmax_last, x, decoded=False)
    assert int(out[0].argmax()) == int(torch.argmax(x[0])) and int(out.sum()) == 1


def test_check_ranges_bounds_every_value_sums_included() -> None:
    """Linear + 2e14 was proven and revealed as -1.4e14: an addition past the ring was not bounded."""

    class AddConst(torch.nn.Module):
        def __init__(self, c: float) -> None:
            super().__init__()
            self.c, self.lin = c, torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + self.c

    torch.manual_seed(0)
    x = torch.rand(3, 2)
    with pytest.raises(MPCRangeError, match=r"refuses layer 'add' \(its output\).*its value can reach 2e\+14"):
        private_inference(AddConst(2e14), x)
    res = private_inference(AddConst(1e3), x)  # control
    assert res.max_abs_error < 1e-2


def _share_and_reveal(x: object, encoded: bool = False) -> torch.Tensor:
    def task(party, xv):  # type: ignore[no-untyped-def]
        s = share(party, 1, xv if party.rank == 1 else None, (2,), encoded=encoded)
        return reveal(party, s, decoded=not encoded)

    return run_local(task, ((None,), (x,))).outputs[1]


@pytest.mark.parametrize(("x", "encoded", "match"), [
    (torch.tensor([1 + 5j, 2 + 0j]), False, "must be a real tensor. Got dtype torch.complex64"),
    (torch.tensor([1.7, -2.9]), True, r"integer tensor of ring elements \(encoded=True\)"),
    ([1.0, 2.0], False, "must be a tensor on the source party. Got list"),
])
def test_share_refuses_inputs_it_would_silently_change(x, encoded, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match=match):
        _share_and_reveal(x, encoded)
    assert torch.equal(_share_and_reveal(torch.tensor([1.5, -2.0])), torch.tensor([1.5, -2.0], dtype=torch.float64))


@pytest.mark.parametrize(("kw", "match"), [
    ({"lo": 0.0, "hi": 2.0}, "'lo' parameter of reciprocal"),
    ({"lo": -1.0, "hi": 2.0}, "'lo' parameter of reciprocal"),
    ({"lo": 2.0, "hi": 1.0}, "'hi' parameter of reciprocal"),
    ({"lo": 1.0}, "'lo' and 'hi' parameters of reciprocal must be given together"),
])
def test_a_reciprocal_range_must_be_positive_and_ordered(shared_eval, kw, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match=match):
        shared_eval(functools.partial(nl.reciprocal, **kw), torch.tensor([1.5], dtype=torch.float64))
    out, _ = shared_eval(functools.partial(nl.reciprocal, lo=1.0, hi=2.0), torch.tensor([1.5], dtype=torch.float64))
    assert math.isclose(out.item(), 1 / 1.5, rel_tol=1e-4)


@pytest.mark.parametrize(("fn", "match"), [
    (lambda p, x: arith.div_public(p, x, 2.5), "'d' parameter of div_public must be an int"),  # type: ignore[arg-type]
    (lambda p, x: arith.add_public(p, x, float("nan")), "'c' parameter of add_public must be finite"),
    (lambda p, x: arith.add_public(p, x, 2e14), "'c' parameter of add_public must be finite"),
])
def test_bad_public_operands_are_named(shared_eval, fn, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match=match):
        shared_eval(fn, torch.tensor([1.0], dtype=torch.float64))
