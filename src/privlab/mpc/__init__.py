"""Secure two-party computation with a trusted dealer, for PyTorch models.

Secret-shared tensors over Z/2^64 (fixed point), Beaver triples and comparison material from a
dealer whose traffic is mostly replaced by shared seeds, comparisons in 5 rounds, non-linear
approximations, private inference of ordinary ``torch.nn.Module``s traced with ``torch.fx``,
in-process and gloo transports that count rounds and bytes, and private logistic regression.
No silently wrong result: ``private_inference`` proves in plaintext that a declared input range
and the weights keep every layer in range (``check_ranges``), and protocols called on shares
check their domains before a value is revealed (``MPCConfig.range_checks``).
Depends only on torch and numpy. See ``docs/mpc.md``.

    from privlab.mpc import private_inference
    res = private_inference(model, images, transport="gloo")
"""

from privlab.mpc.bounds import RangeReport, check_ranges, default_input_range, narrowest_cmp_bits
from privlab.mpc.config import MPCConfig
from privlab.mpc.inference import InferenceResult, private_inference
from privlab.mpc.launch import RunResult, Seeds, run_local
from privlab.mpc.model import PrivateModel, compile_model
from privlab.mpc.party import Party
from privlab.mpc.sharing import reveal, share, zero_share
from privlab.mpc.stats import CommStats, OpStats
from privlab.mpc.train import LogRegConfig, LogRegModel, train_logreg

__all__ = [
    "CommStats",
    "InferenceResult",
    "LogRegConfig",
    "LogRegModel",
    "MPCConfig",
    "OpStats",
    "Party",
    "PrivateModel",
    "RangeReport",
    "RunResult",
    "Seeds",
    "check_ranges",
    "compile_model",
    "default_input_range",
    "narrowest_cmp_bits",
    "private_inference",
    "reveal",
    "run_local",
    "share",
    "train_logreg",
    "zero_share",
]
