"""make_private keeps the wrapped DataLoader's collate_fn and workers; empty batches keep their structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from privlab.dp import make_private
from privlab.dp.sampling import PoissonSampler, PrivateDataLoader, SampleCollate, loader_options


class Sequences(Dataset):
    """Variable-length token sequences: default_collate cannot stack them."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.items = [(torch.randint(0, 7, (2 + i % 4,), generator=gen), i % 2) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def pad_collate(samples):
    seqs, labels = zip(*samples, strict=True)
    ids = torch.zeros(len(seqs), 5, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
    return {"ids": ids, "label": torch.tensor(labels)}


class BagOfTokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(1))


def test_custom_collate_is_used_and_empty_batches_keep_structure() -> None:
    ds = Sequences(6)
    collate = SampleCollate(ds, pad_collate)
    empty = collate([])
    assert set(empty) == {"ids", "label"} and empty["ids"].shape == (0, 5) and empty["label"].shape == (0,)
    opts = loader_options(DataLoader(ds, batch_size=2, collate_fn=pad_collate))
    assert opts is not None and opts["collate_fn"].collate_fn is pad_collate
    assert loader_options(DataLoader(ds, batch_size=2)) is None  # default collate, no workers: fast path
    # q = 1/6 on 6 examples: empty Poisson batches are common (P = (5/6)^6 = 0.33 per step).
    loader = PrivateDataLoader(ds, PoissonSampler(6, 1 / 6, 60, torch.Generator().manual_seed(1)), loader_options=opts)
    sizes = [batch["ids"].shape[0] for batch in loader]
    assert len(sizes) == 60 and 0 in sizes and max(sizes) >= 2


def test_workers_give_the_same_batches_and_logical_batch_flags() -> None:
    ds = Sequences(40)

    def run(num_workers: int) -> list[tuple[list[int], bool]]:
        opts = loader_options(DataLoader(ds, batch_size=8, collate_fn=pad_collate, num_workers=num_workers))
        sampler = PoissonSampler(40, 0.2, 6, torch.Generator().manual_seed(3))
        loader = PrivateDataLoader(ds, sampler, physical_batch_size=3, loader_options=opts)
        flags: list[bool] = []
        loader.on_chunk = flags.append
        out = []
        for batch in loader:
            out.append((batch["ids"].sum(1).tolist(), flags[-1]))
        assert len(flags) == len(out)
        return out

    main, workers = run(0), run(2)
    assert main == workers
    # Negative control: a different seed gives other batches (the comparison can fail).
    assert [b for b, _ in main] != [b for b, _ in run_other_seed(ds)]
    n_logical = sum(last for _, last in main)
    assert n_logical == 6  # every logical batch ends with exactly one closing chunk


def run_other_seed(ds: Dataset) -> list[tuple[list[int], bool]]:
    opts = loader_options(DataLoader(ds, batch_size=8, collate_fn=pad_collate))
    loader = PrivateDataLoader(ds, PoissonSampler(40, 0.2, 6, torch.Generator().manual_seed(4)), 3, loader_options=opts)
    return [(b["ids"].sum(1).tolist(), True) for b in loader]


def test_make_private_trains_with_custom_collate_and_workers() -> None:
    torch.manual_seed(0)
    ds = Sequences(48)
    model = BagOfTokens()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(ds, batch_size=8, collate_fn=pad_collate, num_workers=1)
    pt = make_private(model, opt, loader, noise_multiplier=1.0, seed=0, clipping="ghost", physical_batch_size=4)
    steps = 0
    for batch in pt.data_loader:
        pt.optimizer.zero_grad()
        nn.functional.cross_entropy(pt.model(batch["ids"]), batch["label"]).backward()
        pt.optimizer.step()
        steps += 1
    assert pt.accountant.ledger.steps == len(pt.data_loader) == 6  # one record per logical batch
    assert steps >= 6 and pt.epsilon() > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


class Points(Dataset):
    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(5)
        self.x, self.t = torch.randn(n, 3, generator=gen), torch.randn(n, 1, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.t[i]


def tuple_collate(samples):
    xs, ts = zip(*samples, strict=True)
    return torch.stack(xs), torch.stack(ts)


@pytest.mark.parametrize("custom", [False, True], ids=["fast-path", "dataloader-path"])
def test_breaking_out_mid_logical_batch_does_not_leak_into_the_next_release(custom: bool) -> None:
    # No noise, no effective clipping, summed loss, SGD lr 1: a release moves the weights by minus the
    # gradient of exactly the examples of its logical batch. An epoch abandoned after a stepped chunk
    # of an unfinished logical batch must not add that chunk to the next epoch's first release.
    ds = Points(40)
    model = nn.Linear(3, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = DataLoader(ds, batch_size=10, collate_fn=tuple_collate if custom else None)
    pt = make_private(
        model, opt, loader, noise_multiplier=0.0, max_grad_norm=1e6, seed=0, physical_batch_size=1, loss_reduction="sum"
    )
    flags: list[bool] = []
    signal = pt.data_loader.on_chunk
    assert signal is not None

    def record(last: bool) -> None:
        flags.append(last)
        signal(last)

    pt.data_loader.on_chunk = record

    def train_step(x: torch.Tensor, t: torch.Tensor) -> None:
        pt.optimizer.zero_grad()
        ((pt.model(x) - t) ** 2).sum().backward()
        pt.optimizer.step()

    for x, t in pt.data_loader:
        train_step(x, t)
        if not flags[-1]:  # a stepped chunk of an unfinished logical batch
            break
    assert not flags[-1]
    steps = pt.accountant.ledger.steps
    flags.clear()
    w0 = model.weight.detach().clone()
    xs, ts = [], []
    for x, t in pt.data_loader:
        xs.append(x)
        ts.append(t)
        train_step(x, t)
        if flags[-1]:
            break
    assert pt.accountant.ledger.steps == steps + 1
    x, t = torch.cat(xs), torch.cat(ts)
    expected = w0 - 2 * ((x @ w0.T - t) * x).sum(0, keepdim=True)  # d/dw sum (x w - t)^2
    torch.testing.assert_close(model.weight.detach(), expected)


def test_breaking_out_after_backward_before_step_starts_the_next_epoch_clean() -> None:
    # A backward pass that was never stepped must not leak into (or block) the next logical batch.
    from privlab.data import ArrayDataset

    torch.manual_seed(0)
    ds = ArrayDataset(torch.randn(64, 5), torch.randint(0, 3, (64,)))
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pt = make_private(model, opt, DataLoader(ds, batch_size=16), noise_multiplier=1.0, seed=0, clipping="ghost")
    for x, y in pt.data_loader:
        nn.functional.cross_entropy(pt.model(x), y).backward()
        break  # no step()
    for x, y in pt.data_loader:  # would raise PrivacyViolationError (a second backward before step) if stale
        nn.functional.cross_entropy(pt.model(x), y).backward()
        pt.optimizer.step()
        pt.optimizer.zero_grad()  # zero_grad after step: nothing clears the stale pass before the backward
    assert pt.accountant.ledger.steps == len(pt.data_loader)


def test_empty_batch_of_a_text_collate_has_no_rows() -> None:
    ds = Sequences(4)

    def with_text(samples):
        return {**pad_collate(samples), "text": [f"doc {int(s[0][0])}" for s in samples]}

    empty = SampleCollate(ds, with_text)([])
    assert empty["text"] == [] and empty["ids"].shape == (0, 5)
    full = SampleCollate(ds, with_text)([ds[0]])
    assert len(full["text"]) == 1  # the same collate on one example keeps its row (negative control)
