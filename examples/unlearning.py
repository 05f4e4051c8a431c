"""Remove 5% of an MNIST training set from a trained MLP, and check the removal with U-LiRA.

Run: python examples/unlearning.py      (about 30 s on 2 cores)
"""

from privlab.data import load_mnist
from privlab.models import MLP
from privlab.train import TrainConfig, init_model
from privlab.unlearn import UnlearnConfig, forget_split, get_method, unlearn
from privlab.unlearn.evaluation import choose_forget, evaluate
from privlab.unlearn.ulira import ULiRAConfig

train, test = load_mnist("train").head(1000), load_mnist("test").head(1000)
cfg = UnlearnConfig(method="scrub", train=TrainConfig(epochs=20, batch_size=32, lr=0.05), epochs=3, lr=0.02)

# 1. one removal request: the rows to forget, the model trained on everything, the unlearned model
split = forget_split(train, choose_forget(train, 0.05, seed=0))
model = get_method("scrub").train(init_model(lambda: MLP(hidden=(64,)), 0), train, cfg)
res = unlearn(model, split.forget, split.retain, cfg)
print(f"scrub: {res.seconds:.2f} s, {res.gradient_steps} steps, fraction retrained {res.fraction_retrained}")

# 2. the evaluation against retraining: memorisation, PrivLeak, U-LiRA, utility, cost
for method in ("retrain", "scrub", "gradient_ascent"):
    ev = evaluate(method, lambda: MLP(hidden=(64,)), train, split.index, test, cfg, ulira_config=ULiRAConfig(8))
    assert ev.ulira is not None
    u = ev.ulira.metrics
    print(
        f"{method:16s} forget acc {ev.unlearned.forget_accuracy:.3f} (retrain {ev.retrained.forget_accuracy:.3f})  "
        f"PrivLeak {ev.privleak:+.3f}  U-LiRA TPR@1%FPR {u.tpr_at_fpr[0.01]:.3f} "
        f"[{u.tpr_at_fpr_ci[0.01][0]:.3f}, {u.tpr_at_fpr_ci[0.01][1]:.3f}]  "
        f"test acc {ev.unlearned.test_accuracy:.3f}  time/retrain {ev.time_ratio:.2f}"
    )
