"""Functional clipping and noise: the sensitivity bound, per-example norms, and named errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from privlab.dp import add_noise, clip_gradients, per_example_norms
from privlab.errors import InvalidParameterError


def random_per_sample(B: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(B, 3, 4, generator=g) * 3, "b": torch.randn(B, 5, generator=g) * 0.01}


@settings(max_examples=20, deadline=None)
@given(
    B=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    C=st.floats(0.01, 10.0),
    mode=st.sampled_from(["flat", "per_layer"]),
)
def test_removing_one_example_moves_the_sum_by_at_most_c(ref, B: int, seed: int, C: float, mode: str) -> None:
    ps = random_per_sample(B, seed)
    full = clip_gradients(ps, C, mode)
    ref.assert_close_dicts(full, ref.clipped_sum(ps, C, mode))
    without_last = clip_gradients({k: v[:-1] for k, v in ps.items()}, C, mode)
    diff = math.sqrt(sum(float((full[k] - without_last[k]).pow(2).sum()) for k in full))
    assert diff <= C * (1 + 1e-5)


def test_per_example_norms_shapes_and_values() -> None:
    ps = random_per_sample(4, 0)
    flat = per_example_norms(ps, "flat")["all"]
    manual = torch.cat([v.flatten(1) for v in ps.values()], 1).norm(dim=1)
    torch.testing.assert_close(flat, manual)
    per_layer = per_example_norms(ps, "per_layer")
    assert set(per_layer) == {"a", "b"} and per_layer["a"].shape == (4,)


def test_small_gradients_are_not_scaled() -> None:
    ps = {"w": torch.full((2, 3), 0.01)}
    torch.testing.assert_close(clip_gradients(ps, 10.0)["w"], ps["w"].sum(0))


def test_errors_name_the_parameter() -> None:
    with pytest.raises(InvalidParameterError, match="'max_grad_norm' parameter of clip_gradients"):
        clip_gradients(random_per_sample(2, 0), -1.0)
    with pytest.raises(InvalidParameterError, match="'mode' parameter of clip_gradients"):
        clip_gradients(random_per_sample(2, 0), 1.0, mode="ghost")
    with pytest.raises(InvalidParameterError, match="'std' parameter of add_noise"):
        add_noise({"w": torch.zeros(3)}, std=-1.0)


def test_add_noise_with_a_generator_is_reproducible_and_secure_is_not_seeded() -> None:
    z = {"w": torch.zeros(1000)}
    a = add_noise(z, 1.0, torch.Generator().manual_seed(5))["w"]
    b = add_noise(z, 1.0, torch.Generator().manual_seed(5))["w"]
    torch.testing.assert_close(a, b)
    s1 = add_noise(z, 1.0, torch.Generator().manual_seed(5), secure=True)["w"]
    assert not torch.equal(s1, a)
    assert 0.9 < float(s1.std()) < 1.1
