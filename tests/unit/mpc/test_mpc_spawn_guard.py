"""README's MPC example runs as written (as a script, over gloo), and the same code without the
``if __name__ == "__main__":`` guard fails with an error that names the guard, not just an exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess
ROOT = Path(__file__).resolve().parents[3]


def _readme_mpc_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if "private_inference" in b)


def _run_script(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)


def _unguarded(block: str) -> str:
    """The README example with its body moved to module level (what issue 17 tried)."""
    out = []
    for line in block.splitlines():
        if line.startswith("if __name__"):
            continue
        out.append(line[4:] if line.startswith("    ") else line)
    return "\n".join(out) + "\n"


def test_unguarded_script_names_the_main_guard(tmp_path: Path) -> None:
    res = _run_script(tmp_path, _unguarded(_readme_mpc_block()).replace("timeout=60", "timeout=20"))
    assert res.returncode != 0
    assert "MPCError" in res.stderr and "while starting" in res.stderr, res.stderr[-3000:]
    assert 'if __name__ == "__main__":' in res.stderr.splitlines()[-1]


@pytest.mark.slow
def test_readme_mpc_example_runs_as_written(tmp_path: Path) -> None:
    res = _run_script(tmp_path, _readme_mpc_block())
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("tensor([") and lines[-1].endswith("1.0")  # argmax agreement with plaintext
