"""DP fine-tuning with LoRA adapters through ``peft``: freeze the base, privatise only the adapters.

LoRA (Hu et al. 2022) adds ``W x + B A x`` with trainable low-rank ``A`` (r x d) and ``B`` (p x r) in
``nn.Linear`` sub-modules; everything else is frozen. DP-SGD then clips and noises only the adapter
parameters (Yu et al. 2022, "Differentially Private Fine-tuning of Language Models"): the noise
dimension drops from the model size to the adapter size, and the frozen base needs no per-example
gradients. Requires the ``llm`` extra (``pip install peft transformers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError


def check_target_names(value: Any, name: str, owner: str, allow_empty: bool = False) -> list[str]:
    """``value`` as a list of module-name suffixes: a list or tuple of non-empty strings (non-empty itself).

    A bare string is refused: peft would read ``"qkv"`` as a regular expression, and a sequence of
    names would take it for the names ``"q"``, ``"k"``, ``"v"``.
    """
    ok = isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)
    if not ok or (not value and not allow_empty):
        want = "a list or tuple of module names (or name suffixes), e.g. ['qkv', 'proj']"
        why = " (a string would be read as its characters)" if isinstance(value, str) else ""
        raise InvalidParameterError(f"The '{name}' parameter of {owner} must be {want}{why}. Got {value!r} instead.")
    return list(value)


def _check_targets_exist(model: nn.Module, targets: list[str]) -> None:
    """Every target must name a module as peft matches them: the full name, or its suffix after a '.'."""
    names = [n for n, _ in model.named_modules() if n]
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise InvalidParameterError(
            f"The 'target_modules' parameter of add_lora must name modules of the model (a module's name, or the "
            f"part of it after a '.'). Got {targets!r}, of which {missing!r} match no module; the model's Linear "
            f"layers are named {linear!r}."
        )


def add_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters on the named Linear layers; only adapters stay trainable.

    ``target_modules`` are module-name suffixes (e.g. ``["qkv", "proj"]`` for privlab's GPT). The
    returned model is a ``peft`` model; pass it to :func:`privlab.dp.make_private` as usual. peft
    changes ``model`` itself (it injects the adapters and freezes the rest): deep-copy it first to keep
    the original. An empty or string ``target_modules``, or a name matching no module, raises
    :class:`~privlab.errors.InvalidParameterError`. peft keeps the adapters of an ``nn.Embedding`` in a
    ``ParameterDict``, which privlab.dp has no per-example rule for: target Linear layers for DP.
    """
    targets = check_target_names(target_modules, "target_modules", "add_lora")
    _check_targets_exist(model, targets)
    check_int(r, "r", "add_lora", low=1)
    check_int(alpha, "alpha", "add_lora", low=1)
    check_real(dropout, "dropout", "add_lora", low=0.0, high=1.0, high_open=True)
    from peft import LoraConfig, get_peft_model  # optional dependency (llm extra)

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    peft_model: nn.Module = get_peft_model(model, config)
    return peft_model
