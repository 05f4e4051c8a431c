"""privlab.models: shapes, no example mixing, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privlab.errors import InvalidParameterError
from privlab.models import GPT, MLP, GPTConfig, SmallCNN, build_model


@pytest.mark.parametrize(
    ("model", "x", "out"),
    [
        (MLP(), torch.randn(5, 1, 28, 28), (5, 10)),
        (SmallCNN(), torch.randn(5, 1, 28, 28), (5, 10)),
        (SmallCNN(groups=4), torch.randn(5, 1, 28, 28), (5, 10)),
        (MLP(in_features=105, hidden=(32,), num_classes=2), torch.randn(5, 105), (5, 2)),
    ],
)
def test_output_shapes(model: nn.Module, x: torch.Tensor, out: tuple[int, int]) -> None:
    assert model(x).shape == out


def test_no_batchnorm_anywhere() -> None:
    for m in (MLP(), SmallCNN(groups=4), GPT()):
        assert not any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in m.modules())


@pytest.mark.parametrize("model", [SmallCNN(groups=4), GPT(GPTConfig(block_size=16, n_layer=2))])
def test_examples_do_not_interact(model: nn.Module) -> None:
    """Example i's output does not depend on example j (what per-example clipping assumes)."""
    model.eval()
    x = torch.randn(4, 1, 28, 28) if isinstance(model, SmallCNN) else torch.randint(0, 96, (4, 16))
    full = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(full, alone, atol=1e-5)


def test_gpt_is_causal() -> None:
    g = GPT(GPTConfig(block_size=16, n_layer=2)).eval()
    idx = torch.randint(0, 96, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 96
    a, b = g(idx), g(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-6)


def test_gpt_rejects_long_context_and_bad_config() -> None:
    g = GPT(GPTConfig(block_size=8, n_layer=1))
    with pytest.raises(InvalidParameterError, match="'idx' parameter"):
        g(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match="'n_embd' parameter"):
        GPTConfig(n_embd=30, n_head=4)
    assert g.generate(torch.zeros(1, 1, dtype=torch.long), 5, temperature=0).shape == (1, 6)


def test_build_model_by_name() -> None:
    assert isinstance(build_model("cnn"), SmallCNN)
    with pytest.raises(InvalidParameterError, match="'name' parameter of build_model"):
        build_model("resnet")
