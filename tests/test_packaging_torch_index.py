"""scripts/torch_index.sh: where scripts/setup.sh installs torch from when none is importable. By default
pip's own configuration (a machine may reach only its configured index); LEANOPS_TORCH_INDEX=cpu chooses
PyTorch's CPU-only wheels, so a CPU-only Linux machine downloads no CUDA libraries; any URL is passed on."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _index(tmp_path, **env):
    """(stdout, stderr) of the script with ``LEANOPS_TORCH_INDEX`` taken only from ``env``."""
    full = {k: v for k, v in os.environ.items() if k != "LEANOPS_TORCH_INDEX"}
    full.update(env)
    out = subprocess.run(["bash", str(ROOT / "scripts/torch_index.sh"), sys.executable], capture_output=True,
                         text=True, env=full, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), out.stderr


def test_unset_means_pips_own_configuration(tmp_path):
    stdout, stderr = _index(tmp_path)
    assert stdout == ""
    assert "LEANOPS_TORCH_INDEX=cpu" in stderr  # says how to get CPU-only wheels


@pytest.mark.parametrize("value", ["default", ""])
def test_default_means_pips_own_configuration(tmp_path, value):
    assert _index(tmp_path, LEANOPS_TORCH_INDEX=value)[0] == ""


def test_cpu_chooses_the_cpu_only_index(tmp_path):
    assert _index(tmp_path, LEANOPS_TORCH_INDEX="cpu")[0] == CPU_INDEX


def test_explicit_index_is_used(tmp_path):
    url = "https://download.pytorch.org/whl/cu128"
    assert _index(tmp_path, LEANOPS_TORCH_INDEX=url)[0] == url
