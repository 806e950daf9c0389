"""scripts/torch_index.sh: where scripts/setup.sh installs torch from when none is importable. A Linux machine
without an NVIDIA driver must get CPU-only wheels (PyPI's Linux torch pulls the CUDA libraries)."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
HAS_DRIVER = shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version")


def _index(tmp_path, path_prefix=None, **env):
    """(stdout, stderr) of the script with pip's config files ignored and ``env`` on top."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LEANOPS_TORCH_INDEX", "PIP_INDEX_URL"))}
    full.update(PIP_CONFIG_FILE=os.devnull, **env)
    if path_prefix:
        full["PATH"] = f"{path_prefix}{os.pathsep}{full['PATH']}"
    out = subprocess.run(["bash", str(ROOT / "scripts/torch_index.sh"), sys.executable], capture_output=True,
                         text=True, env=full, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), out.stderr


def test_explicit_index_is_used(tmp_path):
    assert _index(tmp_path, LEANOPS_TORCH_INDEX="https://download.pytorch.org/whl/cu128")[0] == (
        "https://download.pytorch.org/whl/cu128")


@pytest.mark.parametrize("value", ["default", ""])
def test_default_means_pips_own_configuration(tmp_path, value):
    out, why = _index(tmp_path, LEANOPS_TORCH_INDEX=value)
    assert out == "" and "pip's configured index" in why


@pytest.mark.skipif(platform.system() != "Linux" or HAS_DRIVER, reason="needs Linux without an NVIDIA driver")
def test_linux_without_a_driver_gets_cpu_wheels(tmp_path):
    out, why = _index(tmp_path)
    assert out == CPU_INDEX and "no NVIDIA driver" in why


@pytest.mark.skipif(platform.system() != "Linux", reason="the CPU default applies to Linux only")
def test_a_driver_keeps_pips_index(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    out, why = _index(tmp_path, path_prefix=str(fake))
    assert out == "" and "NVIDIA driver found" in why


@pytest.mark.skipif(platform.system() != "Linux" or HAS_DRIVER, reason="needs Linux without an NVIDIA driver")
def test_a_configured_mirror_is_respected(tmp_path):
    out, why = _index(tmp_path, PIP_INDEX_URL="https://mirror.example/simple")
    assert out == "" and f"LEANOPS_TORCH_INDEX={CPU_INDEX}" in why
