"""DP-SGD for any PyTorch model made of supported layers.

Pieces (each one job): :mod:`~privlab.dp.per_sample` (``torch.func`` per-example gradients),
:mod:`~privlab.dp.layers` + :mod:`~privlab.dp.hooks` (per-example gradients and ghost norms from
captured activations), :mod:`~privlab.dp.mechanism` (the one clip-sum-noise step every DP-SGD path
calls), :mod:`~privlab.dp.clipping` (norms), :mod:`~privlab.dp.noise` (secure random numbers),
:mod:`~privlab.dp.sampling` (Poisson sampling, virtual batches), :mod:`~privlab.dp.optimizer`,
:mod:`~privlab.dp.validation`, and the :func:`make_private` facade. See ``docs/dp.md``.
"""

from privlab.dp.clipping import per_example_norms
from privlab.dp.facade import Accountant, PrivateTraining, make_private
from privlab.dp.mechanism import add_noise, clip_factors, clip_gradients, dp_sgd_sum
from privlab.dp.optimizer import DPOptimizer
from privlab.dp.per_sample import per_sample_gradients
from privlab.dp.sampling import PoissonSampler, PrivateDataLoader
from privlab.dp.validation import replace_batchnorm, validate_module

__all__ = [
    "Accountant",
    "DPOptimizer",
    "PoissonSampler",
    "PrivateDataLoader",
    "PrivateTraining",
    "add_noise",
    "clip_factors",
    "clip_gradients",
    "dp_sgd_sum",
    "make_private",
    "per_example_norms",
    "per_sample_gradients",
    "replace_batchnorm",
    "validate_module",
]
