"""Bundled demo architectures (the benchmark's models), built from plain torch.nn layers."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from privlab._validation import check_choice


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: softmax self-attention and a GELU MLP, residual adds."""

    def __init__(self, dim: int = 64, heads: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.scale = 1.0 / math.sqrt(dim // heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # [B, T, C]
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)  # each [B, T, C]
        q = q.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)  # [B, H, T, D]
        k = k.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)  # [B, H, T, T]
        y = (att @ v).transpose(1, 2).reshape(b, t, c)  # [B, T, C]
        x = x + self.proj(y)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Patch embedding of a 28x28 image into 16 tokens, one encoder block, mean-pool, classifier."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, kernel_size=7, stride=7)  # [B, dim, 4, 4]
        self.block = EncoderBlock(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).flatten(2).transpose(1, 2)  # [B, 16, dim]
        h = self.block(h)
        return self.head(h.mean(dim=1))


def mlp() -> nn.Module:
    """MLP 784-1024-1024-10 with ReLUs."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )


def cnn() -> nn.Module:
    """LeNet-style CNN: Conv(1->16,5)-ReLU-MaxPool2-Conv(16->16,5)-ReLU-MaxPool2-FC-ReLU-FC."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


DEMOS = {"mlp": mlp, "cnn": cnn, "transformer": TinyTransformer}


def demo_model(name: str, seed: int = 0) -> nn.Module:
    """A demo model with seeded random weights, in eval mode (input: ``[B, 1, 28, 28]``)."""
    check_choice(name, "name", "demo_model", DEMOS)
    torch.manual_seed(seed)
    return DEMOS[name]().eval()
