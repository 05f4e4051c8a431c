"""A small GPT-style decoder (nanoGPT-sized) for language-model experiments and canaries.

References: Radford et al. 2019 (GPT-2); the layout follows Karpathy's nanoGPT (pre-LayerNorm
blocks, learned positional embeddings; unlike nanoGPT the input and output embeddings are *not*
tied, so every parameter belongs to one layer, which ghost clipping requires). Attention uses
``scaled_dot_product_attention`` with a causal mask, so no example ever attends to another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`GPT`. Defaults give ~0.8M parameters at a 96-symbol vocabulary."""

    vocab_size: int = 96
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", "GPTConfig", low=2)
        check_int(self.block_size, "block_size", "GPTConfig", low=1)
        check_int(self.n_layer, "n_layer", "GPTConfig", low=1)
        check_int(self.n_head, "n_head", "GPTConfig", low=1)
        check_int(self.n_embd, "n_embd", "GPTConfig", low=1)
        check_real(self.dropout, "dropout", "GPTConfig", low=0.0, high=1.0, high_open=True)
        if self.n_embd % self.n_head:
            raise InvalidParameterError(
                f"The 'n_embd' parameter of GPTConfig must be a multiple of n_head={self.n_head}. "
                f"Got {self.n_embd} instead."
            )


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        out: torch.Tensor = self.proj(y)
        return out


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    """Decoder-only transformer: token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, cfg: GPTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GPTConfig()
        c = self.cfg
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if self.cfg.block_size < T:
            raise InvalidParameterError(
                f"The 'idx' parameter of GPT.forward must have at most block_size="
                f"{self.cfg.block_size} tokens. Got {T} instead."
            )
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.ln_f(x))  # (B, T, vocab)
        return logits

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0) -> torch.Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T); greedy when temperature is 0."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.cfg.block_size :])[:, -1, :]  # (B, vocab)
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
