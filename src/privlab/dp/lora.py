"""DP fine-tuning with LoRA adapters through ``peft``: freeze the base, privatise only the adapters.

LoRA (Hu et al. 2022) adds ``W x + B A x`` with trainable low-rank ``A`` (r x d) and ``B`` (p x r) in
``nn.Linear`` sub-modules; everything else is frozen. DP-SGD then clips and noises only the adapter
parameters (Yu et al. 2022, "Differentially Private Fine-tuning of Language Models"): the noise
dimension drops from the model size to the adapter size, and the frozen base needs no per-example
gradients. Requires the ``llm`` extra (``pip install peft transformers``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from privlab._validation import check_int, check_real


def add_lora(
    model: nn.Module,
    target_modules: Sequence[str],
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters on the named Linear layers; only adapters stay trainable.

    ``target_modules`` are module-name suffixes (e.g. ``["qkv", "proj"]`` for privlab's GPT). The
    returned model is a ``peft`` model; pass it to :func:`privlab.dp.make_private` as usual.
    """
    check_int(r, "r", "add_lora", low=1)
    check_int(alpha, "alpha", "add_lora", low=1)
    check_real(dropout, "dropout", "add_lora", low=0.0, high=1.0, high_open=True)
    from peft import LoraConfig, get_peft_model  # optional dependency (llm extra)

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), bias="none")
    peft_model: nn.Module = get_peft_model(model, config)
    return peft_model
