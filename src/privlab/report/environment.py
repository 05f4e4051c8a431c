"""The machine and package versions a result was produced on (recorded in every report)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from typing import Any

_PACKAGES = ("privlab", "torch", "numpy", "scipy", "dp-accounting", "opacus", "safetensors")


def _torch_threads() -> int | None:
    """torch's intra-op thread count (results of CPU reductions depend on it), if torch is loaded."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``; "" if unknown).

    Recorded beside timings: ratios between code paths move with the CPU (e.g. MKL-DNN's weight-gradient
    convolution is relatively slower on some CPUs), so a figure is only comparable on the same model.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict[str, Any]:
    """Python, OS, CPU count and the versions of the packages that shape a result."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch_threads(),
        "packages": versions,
    }
