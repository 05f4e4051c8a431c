"""JAX versions of the MPC benchmark's three models, built from the torch ``state_dict`` (numpy).

Used by ``spu_side.py`` (SecretFlow SPU compiles JAX, not torch). Each function mirrors the torch
module in ``privlab.mpc.demos`` layer for layer, with the same parameter names:

* ``mlp``: ``Flatten -> Linear(784,1024) -> ReLU -> Linear(1024,1024) -> ReLU -> Linear(1024,10)``;
* ``cnn``: ``Conv(1->16,5) -> ReLU -> MaxPool2 -> Conv(16->16,5) -> ReLU -> MaxPool2 -> FC(256,100)
  -> ReLU -> FC(100,10)`` (ReLU before the pool, as the torch model is written);
* ``transformer``: 7x7 stride-7 patch embedding into 16 tokens of width 64, one pre-norm encoder
  block ``x + proj(MHA(LN1(x)))``, ``x + fc2(GELU(fc1(LN2(x))))``, mean over tokens, linear head.

Formulas (as torch computes them): ``Linear(x) = x W^T + b``; ``LayerNorm(x) = (x - mu) /
sqrt(var + 1e-5) * gamma + beta`` with the biased variance over the last axis (Ba et al. 2016);
attention ``softmax(Q K^T / sqrt(d_head)) V`` per head (Vaswani et al. 2017); exact
``GELU(x) = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))`` (Hendrycks & Gimpel 2016), torch's default.
The port is checked against torch's logits in ``spu_side.py`` before any SPU run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Params = Mapping[str, "jax.Array | np.ndarray"]  # numpy outside SPU, traced arrays inside


def _linear(x: jax.Array, p: Params, name: str) -> jax.Array:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _conv(x: jax.Array, p: Params, name: str, stride: int = 1) -> jax.Array:
    """``Conv2d`` in NCHW / OIHW layout, no padding, plus the per-channel bias."""
    y = jax.lax.conv_general_dilated(
        x, jnp.asarray(p[f"{name}.weight"]), (stride, stride), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return y + p[f"{name}.bias"].reshape(1, -1, 1, 1)


def _maxpool2(x: jax.Array) -> jax.Array:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _layer_norm(x: jax.Array, p: Params, name: str, eps: float = 1e-5) -> jax.Array:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def mlp(x: jax.Array, p: Params) -> jax.Array:
    """MLP 784-1024-1024-10 with ReLUs; ``x``: ``[B, 1, 28, 28]``, returns logits ``[B, 10]``."""
    h = x.reshape(x.shape[0], -1)
    h = jax.nn.relu(_linear(h, p, "1"))
    h = jax.nn.relu(_linear(h, p, "3"))
    return _linear(h, p, "5")


def cnn(x: jax.Array, p: Params) -> jax.Array:
    """LeNet-style CNN (``nn.Sequential`` indices 0, 3, 7, 9 carry the weights)."""
    h = _maxpool2(jax.nn.relu(_conv(x, p, "0")))  # [B, 16, 12, 12]
    h = _maxpool2(jax.nn.relu(_conv(h, p, "3")))  # [B, 16, 4, 4]
    h = jax.nn.relu(_linear(h.reshape(h.shape[0], -1), p, "7"))
    return _linear(h, p, "9")


def cnn_pool_first(x: jax.Array, p: Params) -> jax.Array:
    """``cnn`` with each ReLU moved behind its max-pool (``relu(max(.)) = max(relu(.))``, exact):
    the rewrite privlab's compiler applies, done by hand for SPU (4x fewer comparisons)."""
    h = jax.nn.relu(_maxpool2(_conv(x, p, "0")))
    h = jax.nn.relu(_maxpool2(_conv(h, p, "3")))
    h = jax.nn.relu(_linear(h.reshape(h.shape[0], -1), p, "7"))
    return _linear(h, p, "9")


def transformer(x: jax.Array, p: Params, heads: int = 4) -> jax.Array:
    """``TinyTransformer``: patch embedding, one pre-norm encoder block, mean-pool, head."""
    e = _conv(x, p, "embed", stride=7)  # [B, C, 4, 4]
    b, c = e.shape[0], e.shape[1]
    h = e.reshape(b, c, -1).transpose(0, 2, 1)  # [B, T=16, C]
    t, d = h.shape[1], c // heads
    qkv = _linear(_layer_norm(h, p, "block.ln1"), p, "block.qkv")  # [B, T, 3C]
    q, k, v = (
        qkv[..., i * c : (i + 1) * c].reshape(b, t, heads, d).transpose(0, 2, 1, 3) for i in range(3)
    )  # each [B, H, T, D]
    att = jax.nn.softmax((q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(d)), axis=-1)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, c)
    h = h + _linear(y, p, "block.proj")
    f = jax.nn.gelu(_linear(_layer_norm(h, p, "block.ln2"), p, "block.fc1"), approximate=False)
    h = h + _linear(f, p, "block.fc2")
    return _linear(h.mean(axis=1), p, "head")


MODELS: dict[str, Callable[[jax.Array, Params], jax.Array]] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn_pool_first": cnn_pool_first,
    "transformer": transformer,
}
