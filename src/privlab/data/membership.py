"""Seeded membership splits for shadow/reference models (the layout LiRA-style attacks need).

For K models over a population of N examples, example n is IN the training set of model k
independently with probability ``p_in`` (1/2 by default; Carlini et al. 2022, "Membership
Inference Attacks From First Principles", Sec. IV). ``balanced=True`` instead makes every example
IN for exactly half of the models (the variant of their released code), which keeps the number of
IN/OUT observations per example equal.
"""

from __future__ import annotations

import numpy as np

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError


def membership_mask(
    n_models: int,
    n_examples: int,
    seed: int,
    p_in: float = 0.5,
    *,
    balanced: bool = False,
) -> np.ndarray:
    """A (n_models, n_examples) boolean mask: ``mask[k, n]`` says whether model k trains on n."""
    K = check_int(n_models, "n_models", "membership_mask", low=1)
    N = check_int(n_examples, "n_examples", "membership_mask", low=1)
    check_int(seed, "seed", "membership_mask", low=0)
    p = check_real(p_in, "p_in", "membership_mask", low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    if not balanced:
        return rng.random((K, N)) < p
    if p != 0.5 or K % 2:
        raise InvalidParameterError(
            "The 'balanced' parameter of membership_mask needs p_in=0.5 and an even n_models. "
            f"Got p_in={p}, n_models={K} instead."
        )
    # For each example, a random half of the models: rank K uniforms per column.
    order = rng.random((K, N)).argsort(axis=0)
    return order < K // 2
