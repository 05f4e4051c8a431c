"""Contract test over every registered unlearning method, and the errors at the boundary."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError, UnsupportedModuleError
from privlab.models import MLP, SmallCNN
from privlab.train import TrainConfig, init_model
from privlab.unlearn import METHODS, UnlearnConfig, UnlearnResult, forget_split, get_method, unlearn

TRAIN = TrainConfig(epochs=3, batch_size=32, lr=0.05)


def _cfg(name: str) -> UnlearnConfig:
    return UnlearnConfig(method=name, train=TRAIN, epochs=1, batch_size=32, lr=0.01, shards=2, slices=2)


def _model(name: str, data: ArrayDataset) -> torch.nn.Module:
    hidden = () if get_method(name).kind == "certified" else (32,)
    d, c = int(np.prod(data.x.shape[1:])), data.num_classes
    return init_model(lambda: MLP(in_features=d, hidden=hidden, num_classes=c), 0)


def _params(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_registry_lists_every_kind() -> None:
    assert {"retrain", "sisa", "finetune", "gradient_ascent", "neggrad_plus", "scrub", "salun", "certified"} <= set(
        METHODS
    )
    assert {m.kind for m in METHODS.values()} == {"exact", "approximate", "certified"}
    with pytest.raises(InvalidParameterError, match=r"'method'"):
        get_method("nope")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name: str, request: pytest.FixtureRequest) -> None:
    # certified removal fits K exact Newton solves: Adult (106 features, 2 classes) keeps it fast
    mnist_small = request.getfixturevalue("adult_small" if name == "certified" else "mnist_small")
    method = get_method(name)
    cfg = _cfg(name)
    original = method.train(_model(name, mnist_small), mnist_small, cfg)
    before = _params(original).clone()
    split = forget_split(mnist_small, np.arange(0, 400, 20))
    res = unlearn(original, split.forget, split.retain, cfg)
    assert isinstance(res, UnlearnResult) and res.method == name
    assert torch.equal(_params(original), before), "the input model must not be modified"
    assert not torch.equal(_params(res.model), before), "unlearning must change the model"
    out = res.model(mnist_small.x[:7])
    assert out.shape == (7, mnist_small.num_classes) and torch.isfinite(out).all()
    assert res.seconds > 0 and res.gradient_steps >= 1 and res.examples_processed >= 1
    assert 0.0 <= res.fraction_retrained <= 1.0
    assert (res.fraction_retrained == 1.0) == (name == "retrain" or res.details.get("retrained") is True) or (
        name == "sisa"
    )
    d = res.to_dict()
    assert d["method"] == name and isinstance(d["details"], dict)
    # loaders work like datasets (same seeds -> same model)
    if name != "sisa":  # SISA's checkpoints moved on with the first removal (a stale ensemble is refused)
        loaders = DataLoader(split.forget, batch_size=8), DataLoader(split.retain, batch_size=8)
        res2 = unlearn(original, *loaders, cfg)
        assert torch.equal(_params(res2.model), _params(res.model))
    else:
        with pytest.raises(InvalidParameterError, match=r"'model'.*stale"):
            unlearn(original, split.forget, split.retain, cfg)
    # bad input: empty forget set, wrong config type
    empty = ArrayDataset(mnist_small.x[:0], mnist_small.y[:0])
    with pytest.raises(InvalidParameterError, match=r"'forget'"):
        unlearn(original, empty, split.retain, cfg)
    with pytest.raises(InvalidParameterError, match=r"'config'"):
        unlearn(original, split.forget, split.retain, {"method": name})  # type: ignore[arg-type]


def test_forget_split_errors(mnist_small: ArrayDataset) -> None:
    with pytest.raises(InvalidParameterError, match=r"'forget'.*at least one"):
        forget_split(mnist_small, [])
    with pytest.raises(InvalidParameterError, match=r"'forget'.*0..399"):
        forget_split(mnist_small, [3, 400])
    with pytest.raises(InvalidParameterError, match=r"'forget'.*repeat"):
        forget_split(mnist_small, [3, 3])
    outside = ArrayDataset(mnist_small.x[:3] + 0.5, mnist_small.y[:3])
    with pytest.raises(InvalidParameterError, match=r"'forget'.*subset of the training set.*3 of 3"):
        forget_split(mnist_small, outside)
    by_rows = forget_split(mnist_small, mnist_small.subset([5, 9, 2]))
    assert by_rows.index.tolist() == [2, 5, 9] and len(by_rows.retain) == 397
    mask = np.zeros(400, dtype=bool)
    mask[[1, 2]] = True
    assert forget_split(mnist_small, mask).index.tolist() == [1, 2]


def test_certified_refuses_a_cnn(mnist_small: ArrayDataset) -> None:
    split = forget_split(mnist_small, [0, 1])
    cnn = SmallCNN()
    with pytest.raises(UnsupportedModuleError, match=r"'model'.*linear model.*Conv2d"):
        unlearn(cnn, split.forget, split.retain, _cfg("certified"))
    with pytest.raises(UnsupportedModuleError, match=r"'model'"):
        get_method("certified").train(MLP(hidden=(8,)), mnist_small, _cfg("certified"))
    with pytest.raises(InvalidParameterError, match=r"'model'.*train_certified"):
        unlearn(MLP(hidden=()), split.forget, split.retain, _cfg("certified"))


def test_sisa_checks_the_training_set(mnist_small: ArrayDataset) -> None:
    split = forget_split(mnist_small, [0, 1])
    cfg = _cfg("sisa")
    ens = get_method("sisa").train(_model("sisa", mnist_small), mnist_small, cfg)
    stranger = ArrayDataset(mnist_small.x[:2] * 0.5, mnist_small.y[:2])
    with pytest.raises(InvalidParameterError, match=r"'forget'.*subset of the training set"):
        unlearn(ens, stranger, split.retain, cfg)
    with pytest.raises(InvalidParameterError, match=r"'model'.*SISAEnsemble"):
        unlearn(copy.deepcopy(_model("sisa", mnist_small)), split.forget, split.retain, cfg)


def test_certified_checks_the_training_set(adult_small: ArrayDataset) -> None:
    split = forget_split(adult_small, [0, 1])
    cert = get_method("certified").train(_model("certified", adult_small), adult_small, _cfg("certified"))
    with pytest.raises(InvalidParameterError, match=r"'forget'.*training set \(400 rows\)"):
        unlearn(cert, split.forget, split.retain.head(100), _cfg("certified"))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(InvalidParameterError, match=r"'alpha'"):
        UnlearnConfig(alpha=1.5)
    with pytest.raises(InvalidParameterError, match=r"'shards'"):
        UnlearnConfig(shards=0)
    with pytest.raises(InvalidParameterError, match=r"'train'"):
        UnlearnConfig(train={"epochs": 1})  # type: ignore[arg-type]


def test_a_forget_row_also_in_retain_is_warned_and_counted(mnist_small: ArrayDataset) -> None:
    from privlab.unlearn import ForgetRetainOverlapWarning

    cfg = _cfg("finetune")
    model = _model("finetune", mnist_small)
    split = forget_split(mnist_small, np.arange(0, 400, 20))
    x, y = torch.cat([split.retain.x, split.forget.x[:3]]), torch.cat([split.retain.y, split.forget.y[:3]])
    leaky = ArrayDataset(x, y, split.retain.name, split.retain.classes)
    with pytest.warns(ForgetRetainOverlapWarning, match="3 of the 20 rows of 'forget'"):
        res = unlearn(model, split.forget, leaky, cfg)
    assert res.details["forget_rows_in_retain"] == 3
    # control: a disjoint split is silent; the same features under another label are not the same row
    relabelled = ArrayDataset(split.forget.x[:3], (split.forget.y[:3] + 1) % 10, "x", split.retain.classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForgetRetainOverlapWarning)
        res = unlearn(model, split.forget, split.retain, cfg)
        assert res.details["forget_rows_in_retain"] == 0
        assert unlearn(model, relabelled, leaky, cfg).details["forget_rows_in_retain"] == 0
