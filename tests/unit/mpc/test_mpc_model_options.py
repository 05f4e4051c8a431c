"""Layer and function options under private inference: each is either honoured (the output matches
plaintext torch) or refused by ``compile_model`` naming the layer and the option, never ignored."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from privlab.errors import UnsupportedModuleError
from privlab.mpc.inference import private_inference
from privlab.mpc.model import compile_model

ULP = 2.0**-16  # the default fixed-point precision, f = 16


def _x(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _kinds(m: nn.Module, shape: tuple[int, ...]) -> list[str]:
    gm = compile_model(m, shape).graph_module
    return [type(gm.get_submodule(str(n.target))).__name__ for n in gm.graph.nodes if n.op == "call_module"]


def _linear_bn() -> nn.Module:
    m = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        m[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        m[1].running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
        m[1].weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        m[1].bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    return m.eval()


def test_batchnorm1d_after_linear_on_3d_input_normalises_dim_1() -> None:
    """On ``(B, C, L)`` BatchNorm1d scales dim 1 while a fold into the Linear would scale ``L``
    (C == L == 3 here, so the shapes agree and only the values were wrong: error 4.96 before)."""
    m = _linear_bn()
    assert _kinds(m, (4, 3, 5)) == ["Linear", "BatchNorm1d"]  # not folded
    res = private_inference(m, _x((4, 3, 5)))
    assert res.max_abs_error < 1e-3
    # control: on (B, C) the fold is the same function and still happens
    assert _kinds(m, (4, 5)) == ["Linear"]
    assert private_inference(m, _x((4, 5))).max_abs_error < 1e-3


def test_batchnorm2d_after_linear_is_not_folded() -> None:
    """A Linear on ``(B, C, H, W)`` scales ``W``; BatchNorm2d scales ``C`` (C == W == 3 here)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm2d(3)).eval()
    with torch.no_grad():
        m[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        m[1].running_var.copy_(torch.tensor([0.25, 4.0, 1.0]))
    assert _kinds(m, (2, 3, 2, 4)) == ["Linear", "BatchNorm2d"]
    assert private_inference(m, _x((2, 3, 2, 4))).max_abs_error < 1e-3


class _Fn(nn.Module):
    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x).flatten(1)  # type: ignore[operator]


# Every one of these ran and returned a wrong value or crashed with a size mismatch before.
REFUSED = {
    "AvgPool2d(divisor_override=1)": (nn.AvgPool2d(2, divisor_override=1), "divisor_override=1"),
    "AvgPool2d((2, 1))": (nn.AvgPool2d((2, 1)), r"kernel_size=\(2, 1\)"),
    "AvgPool2d(stride=(1, 2))": (nn.AvgPool2d(2, stride=(1, 2)), r"stride=\(1, 2\)"),
    "AvgPool2d(padding=(0, 1))": (nn.AvgPool2d(2, padding=(0, 1)), r"padding=\(0, 1\)"),
    "MaxPool2d((1, 2))": (nn.MaxPool2d((1, 2)), r"kernel_size=\(1, 2\)"),
    "MaxPool2d(return_indices=True)": (nn.MaxPool2d(2, return_indices=True), "return_indices=True"),
    "F.avg_pool2d(count_include_pad=False)": (
        _Fn(lambda x: F.avg_pool2d(x, 2, 2, 1, count_include_pad=False)), "count_include_pad=False"),
    "F.avg_pool2d(ceil_mode=True)": (_Fn(lambda x: F.avg_pool2d(x, 3, ceil_mode=True)), "ceil_mode=True"),
    "F.avg_pool2d(divisor_override=3)": (_Fn(lambda x: F.avg_pool2d(x, 2, divisor_override=3)), "divisor_override=3"),
    "F.max_pool2d(dilation=2)": (_Fn(lambda x: F.max_pool2d(x, 2, 1, 0, 2)), "dilation=2"),
    "F.max_pool2d(ceil_mode=True)": (_Fn(lambda x: F.max_pool2d(x, 3, ceil_mode=True)), "ceil_mode=True"),
    "F.max_pool2d((1, 2))": (_Fn(lambda x: F.max_pool2d(x, (1, 2))), r"kernel_size=\(1, 2\)"),
    "F.layer_norm((4, 4))": (_Fn(lambda x: F.layer_norm(x, (4, 4))), r"normalized_shape=\(4, 4\)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_options_that_would_be_ignored_are_refused_at_compile_time(case: str) -> None:
    m, option = REFUSED[case]
    with pytest.raises(UnsupportedModuleError, match=r"does not support .*" + option + r".* \((layer|function) '"):
        compile_model(nn.Sequential(m), (1, 1, 4, 4))  # a pooling layer stays a layer: not traced through


def test_layer_norm_shape_computed_at_run_time_is_refused_by_the_parties() -> None:
    """``normalized_shape=x.shape[-2:]`` is an fx node at compile time; the interpreter checks the
    value once it is known (error 1.90 before, normalising the last dimension only)."""
    with pytest.raises(UnsupportedModuleError, match=r"normalized_shape=\(4, 4\)"):
        private_inference(_Fn(lambda x: F.layer_norm(x, x.shape[-2:])), torch.randn(2, 4, 4))


HONOURED = {
    "AvgPool2d(2, padding=1)": nn.AvgPool2d(2, padding=1),  # count_include_pad=True: zero padding
    "AvgPool2d(2, count_include_pad=False)": nn.AvgPool2d(2, count_include_pad=False),  # no padding: the same
    "AvgPool2d((2, 2), stride=(1, 1))": nn.AvgPool2d((2, 2), stride=(1, 1)),
    "MaxPool2d((2, 2), stride=(2, 2), padding=(0, 0))": nn.MaxPool2d((2, 2), stride=(2, 2), padding=(0, 0)),
    "F.max_pool2d(x, 2, 1)": _Fn(lambda x: F.max_pool2d(x, 2, 1)),
    "F.avg_pool2d(x, 2, 2, 1)": _Fn(lambda x: F.avg_pool2d(x, 2, 2, 1)),
    "F.layer_norm(x, (4,))": _Fn(lambda x: F.layer_norm(x, (4,))),
}


@pytest.mark.parametrize("case", list(HONOURED))
def test_supported_options_match_plaintext(case: str) -> None:
    """Controls for the refusals: the options privlab.mpc does honour give torch's output."""
    res = private_inference(nn.Sequential(HONOURED[case], nn.Flatten()), _x((2, 1, 4, 4)) * 4 - 2)
    assert res.output.shape == res.plaintext.shape
    assert res.max_abs_error < 1e-2


class _Softmax(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.sm = nn.Softmax(dim=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x) if self.functional else self.sm(x)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("shape", [(6,), (2, 5), (3, 2, 4), (1, 3, 2, 2)])
def test_softmax_without_dim_uses_torchs_implicit_dim(shape: tuple[int, ...], functional: bool) -> None:
    """torch normalises dim 0 for ranks 1 and 3, dim 1 otherwise. Before, ``Softmax(dim=None)``
    normalised the last dimension (error 0.61 at rank 3, 0.52 at rank 4; ranks 1 and 2, where that
    is torch's dimension, are the controls) and ``F.softmax(x)`` crashed on ``dim=None``."""
    x = _x(shape) * 4 - 2
    res = private_inference(_Softmax(functional), x)
    assert res.max_abs_error < 1e-2
    assert torch.allclose(res.plaintext, torch.softmax(x.double(), 0 if len(shape) in (1, 3) else 1), atol=1e-6)


class _Div(nn.Module):
    def __init__(self, n: float) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.n


@pytest.mark.parametrize("n", [3, 7, 10, -3, 3.0, 4])
def test_division_by_a_public_integer_is_exact_at_any_magnitude(n: float) -> None:
    """``x / n`` for integral ``n`` is ``div_public``: below 2 ulps at ``|x| ~ 7e6`` (scaling by the
    encoded ``1/n`` was off by up to 8.9 for n = 3)."""
    x = torch.tensor([[3.0e5, -3.0e6, 6.0e6, 7.0e6]], dtype=torch.float64)
    res = private_inference(_Div(n), x)
    assert res.max_abs_error < 2 * ULP


def test_division_by_a_non_integral_constant_still_scales() -> None:
    """Control: ``x / 2.5`` keeps the scaling by the encoded ``0.4`` (one ulp at small magnitude)."""
    res = private_inference(_Div(2.5), _x((2, 8)) * 20 - 10)
    assert res.max_abs_error < 4 * ULP


class _SoftmaxTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sm = nn.Softmax(dim=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sm(x).flatten(2) + self.sm(x.flatten(2))  # ranks 4 and 3: torch uses dims 1 and 0


@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
def test_one_softmax_layer_with_two_implicit_dims_is_refused() -> None:
    with pytest.raises(UnsupportedModuleError, match=r"Softmax\(dim=None\) \(layer 'sm'\)"):
        compile_model(_SoftmaxTwice(), (2, 3, 2, 2))
