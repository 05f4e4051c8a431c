"""Skip the federated tests when the ``fl`` extra (Flower, torchmetrics) or MNIST is missing."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("flwr", reason="needs the fl extra: pip install 'privlab[fl]'")
pytest.importorskip("torchmetrics", reason="needs the fl extra: pip install 'privlab[fl]'")


@pytest.fixture(autouse=True)
def _quiet_flower() -> None:
    import flwr  # noqa: F401  (importing it configures its logger; quiet it afterwards)

    logging.getLogger("flwr").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def mnist_test():
    from privlab.data import load_mnist
    from privlab.errors import DataUnavailableError

    try:
        return load_mnist("test")
    except DataUnavailableError as exc:
        pytest.skip(str(exc))
