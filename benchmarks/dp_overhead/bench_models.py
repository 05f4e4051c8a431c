"""Benchmark-local models: a 4-layer pre-LN encoder classifier, and privlab's GPT with batch-first positions."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from privlab.models import GPT


class EncoderBlock(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(att)
        return x + self.mlp(self.ln2(x))


class EncoderClassifier(nn.Module):
    """ids (B, T) -> logits (B, classes): token + learned position embeddings, blocks, mean pool, linear head."""

    def __init__(self, vocab: int, d: int, n_layer: int, n_head: int, seq: int, classes: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.blocks = nn.Sequential(*(EncoderBlock(d, n_head) for _ in range(n_layer)))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids).contiguous()  # (B, T): batch-first
        h = self.blocks(self.tok(ids) + self.pos(pos))
        out: torch.Tensor = self.head(self.ln(h).mean(1))
        return out


class BatchedPosGPT(GPT):
    """privlab's GPT with positions passed as a (B, T) tensor: the same function, but Opacus' hooks
    (which assume every layer input is batch-first) can handle its positional embedding."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device).expand(B, T).contiguous()  # (B, T)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.ln_f(x))  # (B, T, vocab)
        return logits
