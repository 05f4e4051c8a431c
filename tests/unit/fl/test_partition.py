import numpy as np
import pytest
import torch

from privlab.errors import InvalidParameterError
from privlab.fl import dirichlet_partition, iid_partition, user_partition


def _covers(parts, n):
    allidx = torch.cat(parts).numpy()
    return len(allidx) == n and len(np.unique(allidx)) == n


def test_iid_covers_each_example_once_with_balanced_sizes():
    parts = iid_partition(1003, 10, seed=1)
    assert _covers(parts, 1003)
    assert {len(p) for p in parts} == {100, 101}


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not():
    y = torch.arange(5000) % 10

    def mean_classes(alpha):
        parts = dirichlet_partition(y, 20, alpha, seed=0)
        assert _covers(parts, 5000)
        # number of classes making up 90% of a client's data
        out = []
        for p in parts:
            counts = np.sort(np.bincount(y[p].numpy(), minlength=10))[::-1]
            out.append(int(np.searchsorted(np.cumsum(counts) / counts.sum(), 0.9) + 1))
        return np.mean(out)

    assert mean_classes(0.1) < 4  # one or two dominant classes per client
    assert mean_classes(100.0) >= 8  # close to IID (negative control)


def test_user_partition_keeps_each_user_on_one_client():
    users = torch.tensor([3, 1, 3, 2, 1, 3])
    parts = user_partition(users)
    assert [p.tolist() for p in parts] == [[1, 4], [3], [0, 2, 5]]


def test_bad_partition_inputs_name_the_parameter():
    with pytest.raises(InvalidParameterError, match="'num_clients'"):
        iid_partition(5, 10)
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        dirichlet_partition(torch.zeros(10, dtype=torch.long), 2, 0.0)
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        dirichlet_partition(torch.arange(20) % 2, 10, 0.01, min_size=2, max_tries=3)
