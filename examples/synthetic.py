"""DP synthetic Adult with MST at epsilon 1 beside the non-private BayesNet baseline, and what each leaks.

Run: OMP_NUM_THREADS=1 python examples/synthetic.py      (35 s of CPU; 65 s on a busy 2-core machine)
"""

import numpy as np

from privlab.synth import get_generator
from privlab.synth.config import SynthRunConfig
from privlab.synth.evaluation import attribute_inference, domias, fidelity, outlier_rows, utility
from privlab.synth.experiment import load_data
from privlab.synth.table import Table

data = load_data(SynthRunConfig(train_size=600, test_size=1000))  # members, non-members, reference, test
cand = Table(data.train.domain, np.concatenate([data.train.codes, data.control.codes]))
outliers = np.zeros(len(cand), dtype=bool)
outliers[outlier_rows(cand, len(cand) // 10)] = True

for name, eps in (("bayesnet", float("inf")), ("mst", 1.0)):
    fitted = get_generator(name).fit(data.train, epsilon=eps, delta=1e-5, seed=0)
    syn = fitted.sample(len(data.train), seed=0)
    u = utility(data.train, syn, data.test, "income")
    mia = domias(syn, data.train, data.control, data.reference, subset=outliers)
    ai = attribute_inference(data.train, data.control, syn, "sex")
    print(
        f"{name:>8}: accounted epsilon {fitted.epsilon():.3f}  2-way TVD {fidelity(data.train, syn)['tvd_2way']:.3f}  "
        f"TSTR accuracy {u['synthetic']['accuracy']:.3f} (train on real {u['real']['accuracy']:.3f})  "
        f"DOMIAS AUC on outliers {mia.auc:.3f} [{mia.auc_ci[0]:.3f}, {mia.auc_ci[1]:.3f}]  "
        f"attribute inference {ai['accuracy_members']:.3f} (control {ai['accuracy_control']:.3f}, "
        f"prior {ai['accuracy_prior']:.3f})"
    )
