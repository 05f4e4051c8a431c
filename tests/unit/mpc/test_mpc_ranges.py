"""private_inference proves, in plaintext and before any party starts, that the declared input
range and the public weights keep every layer inside the ring and each operation's domain."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from privlab.errors import MPCRangeError
from privlab.mpc.bounds import check_ranges, default_input_range
from privlab.mpc.demos import demo_model
from privlab.mpc.inference import private_inference
from privlab.mpc.model import compile_model


def _mlp(gain: float) -> nn.Module:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    with torch.no_grad():
        m[2].weight.mul_(gain)  # pre-activations of layer '2' grow with the gain
    return m.eval()


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(64, 20, generator=torch.Generator().manual_seed(seed)) * 100


def test_mlp_with_huge_pre_activations_is_refused_naming_the_layer() -> None:
    """Pre-activations near 2e7 wrapped silently before (argmax agreement ~25%)."""
    m = _mlp(1e5)
    assert m(_x()).abs().max() > 1e6  # the model really does leave the comparison range
    with pytest.raises(MPCRangeError, match=r"refuses layer '2' \(Linear\).*product.*2\^30|refuses layer '3' \(ReLU\)"):
        private_inference(m, _x())


def test_same_architecture_with_sane_weights_runs_and_reports_its_bounds() -> None:
    res = private_inference(_mlp(1.0), _x())
    assert res.argmax_agreement == 1.0
    assert res.input_range == (0.0, 128.0)  # the power of two above max |x| = ~100
    assert res.ranges is not None and res.ranges.worst().bound < res.ranges.worst().limit


def test_declared_range_must_contain_the_data_and_be_a_valid_pair() -> None:
    with pytest.raises(MPCRangeError, match=r"'input_range' parameter .* must contain every input value"):
        private_inference(_mlp(1.0), _x(), input_range=(0.0, 10.0))
    with pytest.raises(MPCRangeError, match=r"'input_range' parameter of private_inference must be a pair"):
        private_inference(_mlp(1.0), _x(), input_range=(1.0, float("nan")))


def test_a_wide_declared_range_refuses_what_a_tight_one_accepts() -> None:
    pm = compile_model(_mlp(300.0), (64, 20))
    check_ranges(pm, (0.0, 100.0))  # fine for this range
    with pytest.raises(MPCRangeError, match=r"layer '(2|3|4)'"):
        check_ranges(pm, (-1e5, 1e5))


def test_default_range_and_demo_models_are_proven() -> None:
    assert default_input_range(torch.tensor([0.2, 0.7])) == (0.0, 1.0)
    assert default_input_range(torch.tensor([-3.0, 0.5])) == (-4.0, 4.0)
    for name in ("mlp", "cnn", "transformer"):
        check_ranges(compile_model(demo_model(name), (2, 1, 28, 28)), (0.0, 1.0))


class _Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x @ x.transpose(-2, -1), dim=-1) @ x


def test_softmax_rows_are_convex_weights_in_the_bounds() -> None:
    rep = check_ranges(compile_model(_Attention(), (1, 8, 16)), (-10.0, 10.0))
    att = next(c for c in rep.checks if c.layer == "matmul")
    assert att.bound == pytest.approx(16 * 100.0)
    with pytest.raises(MPCRangeError, match=r"layer 'softmax'.*comparison input"):
        check_ranges(compile_model(_Attention(), (1, 8, 16)), (-400.0, 400.0))  # row spread 5e6 > 2^22


def test_parties_without_a_declared_range_agree_on_one_and_refuse_together() -> None:
    """The one-host-per-party path: the data owner declares its default range at set-up, the model
    owner proves it; a refusal reaches both parties (no hang), a pass costs no protocol round."""
    from privlab.mpc.inference import infer_task
    from privlab.mpc.launch import run_local

    x = _x()
    bad = _mlp(1e5)
    with pytest.raises(MPCRangeError, match=r"refuses layer"):
        run_local(infer_task, ((bad, tuple(x.shape), None), (bad, tuple(x.shape), x)))
    good = _mlp(1.0)
    res = run_local(infer_task, ((good, tuple(x.shape), None), (good, tuple(x.shape), x)))
    ref = private_inference(good, x)
    assert res.stats.rounds == ref.stats.rounds and torch.allclose(res.outputs[1], ref.output, atol=1e-2)


def _unproven(party, module, shape, x):  # type: ignore[no-untyped-def]
    """A model run on shares with no plaintext proof: the runtime checks guard every layer."""
    from privlab.mpc.interpreter import run_program

    return run_program(party, compile_model(module, shape), x)


def test_unproven_model_run_is_guarded_at_runtime() -> None:
    from privlab.mpc.launch import run_local

    x = torch.rand(4, 20, generator=torch.Generator().manual_seed(1))
    good = _mlp(1.0)
    res = run_local(_unproven, ((good, tuple(x.shape), None), (good, tuple(x.shape), x)))
    assert torch.allclose(res.outputs[1], good(x).double(), atol=1e-2)
    assert res.stats.per_op["range_check"].rounds == 8
    huge = _mlp(1.0)
    with torch.no_grad():
        huge[0].weight.mul_(5e9)  # the owner's first-layer products pass 2^30
    with pytest.raises(MPCRangeError, match=r"beaver_owned \(matmul\)"):
        run_local(_unproven, ((huge, tuple(x.shape), None), (huge, tuple(x.shape), x)))
