"""Audit DP-SGD: a correct implementation is consistent with its claim, a broken one is caught.

White-box one-run audit (Steinke, Nasr & Jagielski 2023) with 1000 Dirac gradient canaries on a
small MLP and 4,000 MNIST examples; about a minute on 2 CPU cores.
Run: python examples/audit_dp_sgd.py
"""

import torch

from privlab.audit import AuditSpec
from privlab.audit.dp_training import audit_dp_training, audit_summary
from privlab.data import load_mnist
from privlab.models import MLP

torch.set_num_threads(2)
train = load_mnist("train").head(4000)


def factory() -> MLP:
    return MLP(hidden=(64,))


for fault in (None, "no_noise", "no_clipping"):
    spec = AuditSpec(factory, train, sample_rate=0.05, steps=200, target_epsilon=2.0, seed=0)
    res = audit_dp_training(spec, canaries=1000, fault=fault)
    print(audit_summary(res))
