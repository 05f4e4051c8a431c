"""Build reference models by name (used by configs and the CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from privlab._validation import check_choice
from privlab.models.char import CharMLP
from privlab.models.gpt import GPT, GPTConfig
from privlab.models.vision import MLP, SmallCNN

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "gpt": lambda **kw: GPT(GPTConfig(**kw)),
    "char_mlp": CharMLP,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the registered model ``name`` ("mlp", "cnn", "gpt", "char_mlp") with ``kwargs``."""
    check_choice(name, "name", "build_model", MODELS)
    return MODELS[name](**kwargs)
