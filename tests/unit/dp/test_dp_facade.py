"""make_private end to end: the user's loop, loss reductions, virtual and empty batches, ledger, faults."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privlab.accounting import epsilon as accounting_epsilon
from privlab.data import ArrayDataset
from privlab.dp import DPOptimizer, PrivateTraining, make_private
from privlab.errors import InvalidParameterError


def setup(n: int = 64, batch: int = 16, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    ds = ArrayDataset(torch.randn(n, 5), torch.randint(0, 3, (n,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw.setdefault("noise_multiplier", 1.0)
    return model, make_private(model, opt, DataLoader(ds, batch_size=batch), seed=seed, **kw)


def run_epoch(pt: PrivateTraining, reduction: str = "mean") -> None:
    crit = nn.CrossEntropyLoss(reduction=reduction)
    for x, y in pt.data_loader:
        pt.optimizer.zero_grad()
        crit(pt.model(x), y).backward()
        pt.optimizer.step()


@pytest.mark.parametrize("clipping", ["flat", "per_layer", "ghost"])
def test_user_loop_trains_and_records_every_step(clipping: str) -> None:
    model, pt = setup(clipping=clipping)
    before = [p.detach().clone() for p in model.parameters()]
    run_epoch(pt)
    assert isinstance(pt.optimizer, DPOptimizer)
    assert pt.accountant.steps == len(pt.data_loader) == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    expected = accounting_epsilon(1.0, pt.sample_rate, 4, 1e-5)
    assert pt.epsilon() == pytest.approx(expected, rel=1e-6)
    assert pt.accountant.epsilon(delta=1e-3) < pt.epsilon()


def test_result_is_frozen() -> None:
    _, pt = setup()
    with pytest.raises(AttributeError):
        pt.noise_multiplier = 0.0  # type: ignore[misc]


def test_target_epsilon_is_met_after_planned_steps() -> None:
    _, pt = setup(noise_multiplier=None, target_epsilon=2.0, epochs=3)
    for _ in range(3):
        run_epoch(pt)
    assert pt.accountant.steps == pt.steps == 12
    assert pt.epsilon() <= 2.0 + 1e-9
    assert pt.epsilon() > 1.9


@pytest.mark.parametrize("clipping", ["flat", "ghost"])
def test_mean_and_sum_reductions_give_the_same_update(clipping: str) -> None:
    grads = []
    for reduction in ("mean", "sum"):
        model, pt = setup(clipping=clipping, noise_multiplier=0.0, loss_reduction=reduction, max_grad_norm=0.1)
        x, y = next(iter(pt.data_loader))
        pt.optimizer.zero_grad()
        nn.CrossEntropyLoss(reduction=reduction)(model(x), y).backward()
        pt.optimizer.step()
        scale = 1.0 if reduction == "mean" else 1.0 / 16  # "sum" is not divided by the expected batch size
        grads.append([p.grad * scale for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_virtual_batches_equal_one_logical_batch() -> None:
    """Physical chunks of 5 give the same noiseless update as the whole logical batch."""
    results = []
    for physical in (None, 5):
        model, pt = setup(noise_multiplier=0.0, physical_batch_size=physical, max_grad_norm=0.5, clipping="ghost")
        run_epoch(pt)
        results.append(([p.detach().clone() for p in model.parameters()], pt.accountant.steps))
    (p1, s1), (p2, s2) = results
    assert s1 == s2 == 4
    for a, b in zip(p1, p2, strict=True):
        torch.testing.assert_close(a, b)


def test_empty_batch_still_adds_noise_and_counts() -> None:
    model, pt = setup(noise_multiplier=2.0)
    x = torch.zeros(0, 5)
    y = torch.zeros(0, dtype=torch.long)
    pt.optimizer.zero_grad()
    out = model(x)
    nn.CrossEntropyLoss(reduction="sum")(out, y).backward()
    before = [p.detach().clone() for p in model.parameters()]
    pt.optimizer.step()
    assert pt.accountant.steps == 1
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_poisson_loader_yields_empty_batches_with_right_shapes() -> None:
    _, pt = setup(n=40, batch=1)  # q = 1/40: about 37% of batches are empty
    sizes = [(x.shape, y.shape) for x, y in pt.data_loader]
    assert any(s[0][0] == 0 for s in sizes)
    assert all(s[0][1:] == (5,) for s in sizes)


def test_fault_injection_is_not_accounted() -> None:
    model, pt = setup(noise_multiplier=0.0)
    pt.optimizer.clipping_enabled = False
    pt.optimizer.add_noise_enabled = False
    run_epoch(pt)
    assert pt.accountant.steps == 4  # the ledger still records the claimed mechanism


def test_clipping_disabled_matches_plain_gradient() -> None:
    model, pt = setup(noise_multiplier=5.0, max_grad_norm=1e-3)
    plain_model = copy.deepcopy(model)
    for m in plain_model.modules():  # the copy carries the capture's patched forwards: drop them
        vars(m).pop("forward", None)
    pt.optimizer.clipping_enabled = False
    pt.optimizer.add_noise_enabled = False
    x, y = next(iter(pt.data_loader))
    nn.CrossEntropyLoss()(plain_model(x), y).backward()
    plain = [p.grad for p in plain_model.parameters()]  # (1/|B|) sum_i g_i
    pt.optimizer.zero_grad()
    nn.CrossEntropyLoss()(model(x), y).backward()
    pt.optimizer.step()
    for g, p in zip(plain, model.parameters(), strict=True):  # (1/(qN)) sum_i g_i, qN = 16
        torch.testing.assert_close(p.grad * 16, g * len(x))


def test_seed_makes_training_reproducible_and_secure_rng_runs() -> None:
    m1, pt1 = setup(seed=3)
    m2, pt2 = setup(seed=3)
    run_epoch(pt1)
    run_epoch(pt2)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    m3, pt3 = setup(seed=3, secure_rng=True)
    run_epoch(pt3)
    assert pt3.accountant.steps == 4


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"noise_multiplier": None}, "Exactly one of"),
        ({"noise_multiplier": 1.0, "target_epsilon": 1.0}, "Exactly one of"),
        ({"noise_multiplier": None, "target_epsilon": 1.0}, r"'epochs' \(or 'steps'\) parameter"),
        ({"clipping": "fast"}, "'clipping' parameter of make_private"),
        ({"max_grad_norm": 0.0}, "'max_grad_norm' parameter of make_private"),
        ({"loss_reduction": "none"}, "'loss_reduction' parameter"),
        ({"delta": 1.0}, "'delta' parameter"),
    ],
)
def test_invalid_parameters_are_named(kw: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        setup(**kw)


def test_fixed_size_batches_have_their_own_accounting(tmp_path) -> None:
    from privlab.accounting.fixed_size import FixedSizeLedger, fixed_size_epsilon
    from privlab.dp.checkpoint import load_checkpoint, save_checkpoint

    model, pt = setup(poisson_sampling=False)
    sizes = [len(y) for _, y in pt.data_loader]
    assert sizes == [16, 16, 16, 16]  # exactly batch_size every step
    run_epoch(pt)
    assert isinstance(pt.accountant.ledger, FixedSizeLedger)
    assert pt.epsilon() == pytest.approx(fixed_size_epsilon(1.0, 64, 16, 4, 1e-5))
    save_checkpoint(tmp_path, model, pt.accountant.ledger)
    assert load_checkpoint(tmp_path, model).ledger.epsilon() == pytest.approx(pt.epsilon())
    _, calibrated = setup(poisson_sampling=False, noise_multiplier=None, target_epsilon=4.0, epochs=2)
    assert fixed_size_epsilon(calibrated.noise_multiplier, 64, 16, 8, 1e-5) <= 4.0
    # resuming it at another sigma is refused up front (it used to apply one step and then refuse to record it)
    with pytest.raises(InvalidParameterError, match=r"'ledger' parameter of make_private accounts fixed-size steps"):
        setup(poisson_sampling=False, noise_multiplier=2.0, ledger=pt.accountant.ledger)
    model2, resumed = setup(poisson_sampling=False, noise_multiplier=1.0, ledger=pt.accountant.ledger)
    run_epoch(resumed)  # control: the same sigma resumes
    assert resumed.accountant.ledger.steps == 8


def test_a_step_the_ledger_refuses_leaves_the_weights_untouched() -> None:
    model, pt = setup(poisson_sampling=False)
    before = [p.detach().clone() for p in model.parameters()]
    pt.optimizer.noise_multiplier = 3.0  # a step the fixed-size ledger (at 1.0 after one step) cannot compose
    pt.accountant.ledger.record(1.0, 0.25)
    x, y = next(iter(pt.data_loader))
    pt.optimizer.zero_grad()
    nn.CrossEntropyLoss()(pt.model(x), y).backward()
    with pytest.raises(InvalidParameterError, match=r"must stay 1\.0"):
        pt.optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_generic_dataset_batches_and_empty_batches_keep_shapes() -> None:
    from torch.utils.data import TensorDataset

    from privlab.dp.sampling import collate_indices

    ds = TensorDataset(torch.randn(10, 3, 2), torch.arange(10))
    x, y = collate_indices(ds, [])
    assert x.shape == (0, 3, 2) and y.shape == (0,) and y.dtype == torch.long
    x, y = collate_indices(ds, [1, 4])
    assert x.shape == (2, 3, 2) and y.tolist() == [1, 4]
    model = nn.Linear(2, 2)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(ds, batch_size=2),
        noise_multiplier=1.0,
        seed=0,
        clipping="ghost",
    )
    for xb, _ in pt.data_loader:
        pt.optimizer.zero_grad()
        model(xb).sum().backward()
        pt.optimizer.step()
    assert pt.accountant.steps == 5


def test_too_large_batch_is_named_as_the_loaders_batch_size() -> None:
    model = nn.Linear(3, 2)
    data = TensorDataset(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(InvalidParameterError, match=r"batch_size of at most its dataset's size \(10\).*batch_size=11"):
        make_private(model, opt, DataLoader(data, batch_size=11), noise_multiplier=1.0)


def test_embedding_scale_grad_by_freq_and_bad_flags_are_refused() -> None:
    from privlab.errors import UnsupportedModuleError

    ds = ArrayDataset(torch.randint(0, 10, (32, 4)), torch.randint(0, 3, (32,)))

    def call(emb: nn.Embedding, **kw):
        model = nn.Sequential(emb, nn.Flatten(), nn.Linear(4 * 6, 3))
        return make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(ds, batch_size=8),
                            noise_multiplier=1.0, **kw)

    with pytest.raises(UnsupportedModuleError, match="scale_grad_by_freq=True"):
        call(nn.Embedding(10, 6, scale_grad_by_freq=True))
    call(nn.Embedding(10, 6))  # control
    for kw, name in (({"seed": "7"}, "'seed'"), ({"secure_rng": "no"}, "'secure_rng'"),
                     ({"poisson_sampling": "yes"}, "'poisson_sampling'")):
        with pytest.raises(InvalidParameterError, match=f"{name} parameter of make_private"):
            call(nn.Embedding(10, 6), **kw)
