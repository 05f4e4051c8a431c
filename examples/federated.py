"""Federated learning on Flower: FedAvg with user-level DP and its per-round epsilon, then what a
server could reconstruct from one client's update with and without each defence, and whether an
attacker can tell which clients took part.

Run: OMP_NUM_THREADS=1 python examples/federated.py     (needs: pip install 'privlab[fl]')
"""

from privlab.data import load_mnist
from privlab.fl import FedConfig, UserDPConfig, run_federated
from privlab.fl.client import build_fl_model
from privlab.fl.inversion import InversionConfig
from privlab.fl.leakage import DEFENCES, inversion_experiment

# Central DP: each client joins a round with probability 10/100 (Poisson sampling), the epsilon the
# accountant reports is for exactly that. noise="distributed" (clients add the noise; with secagg=True
# the server sees only the sum) samples exactly 10 per round and reports that sampling's larger bound.
cfg = FedConfig(num_clients=100, clients_per_round=10, rounds=5, train_size=20000,
                dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.1))
res = run_federated(cfg, progress=True)  # Flower's simulation engine, 2 Ray actors
for r in res.rounds:
    print(f"round {r.round}: accuracy {r.accuracy:.4f}, user-level epsilon {r.epsilon:.3f} "
          f"(delta 1e-5, {cfg.sampling} client sampling)")

test = load_mnist("test")
model = build_fl_model(cfg, seed=1)  # the global model a client receives
classifier = build_fl_model(cfg)
classifier.load_state_dict(res.state)
for defence in DEFENCES:
    inv = inversion_experiment(model, test.head(10), classifier, defence=defence, num_targets=4,
                               cfg=InversionConfig(method="dlg", steps=100, lr=1.0))
    print(f"{defence:7s}: median PSNR {inv.median_psnr:5.1f} dB (mean-image guess {inv.baseline_psnr_mean_image:.1f})")

# Which clients took part? The subject-level attack on the final global model (Suri et al. 2022).
from privlab.fl.subject_mia import subject_mia_experiment  # noqa: E402

m = subject_mia_experiment(cfg, res.state, max_subjects=50)
print(f"subject-level MIA: AUC {m.auc:.3f} [{m.auc_ci[0]:.3f}, {m.auc_ci[1]:.3f}] over {m.n_members} clients")

# The same FedAvg as real Flower processes on this host (a SuperLink, one SuperNode per client, flwr run):
#     from privlab.fl.deploy import FlowerDeployment
#     with FlowerDeployment(FedConfig(num_clients=4, clients_per_round=2, rounds=3)) as dep:
#         print(dep.run().accuracy)
