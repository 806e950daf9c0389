"""The package itself: build info, the fallback without a compiled library, the README example, the CLI."""
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

import leanops

ROOT = Path(__file__).resolve().parents[1]


def test_build_info_reports_what_the_issue_asks():
    info = leanops.build_info()
    for key in ("version", "torch_version", "backends", "cuda_archs", "threads", "cuda_kernels_tested_on_gpu"):
        assert key in info
    assert info["torch_version"] == torch.__version__
    assert "reference" in info["backends"]


def _run(code, **env):
    full_env = {**os.environ, **env}
    full_env.pop("LEANOPS_QUIET", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)


def test_import_without_compiled_library_warns_once_and_falls_back():
    code = (
        "import warnings, torch\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import leanops\n"
        "    import leanops.ops\n"
        "print(sum('compiled library not loaded' in str(x.message) for x in w))\n"
        "print(leanops.build_info()['backends'])\n"
        "m = torch.randn(2, 11, 4)\n"
        "print(leanops.bipartite_match(m, 3)[0].shape)\n"
    )
    out = _run(code, LEANOPS_DISABLE_COMPILED="1", TRITON_INTERPRET="1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "1"
    assert "cpp" not in lines[1]
    assert lines[2] == "torch.Size([2, 3])"


def test_readme_usage_example_runs():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Usage\n\n```python\n(.*?)```", readme, re.S).group(1)
    out = _run(code, TRITON_INTERPRET="1")
    assert out.returncode == 0, out.stderr


def test_cli_info():
    out = subprocess.run([sys.executable, "-m", "leanops", "info"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["backends"][0] == "reference"
    assert "triton" in info and (info["triton"].startswith("unavailable: ") or "triton" in info["backends"])


def test_cli_bench_names_are_the_bench_modules_with_a_sweep():
    from leanops.cli import bench_names

    names = bench_names()
    assert {"merge", "pool", "verify", "minions"} <= set(names) and "timing" not in names
    for name in names:
        assert callable(importlib.import_module(f"leanops.bench.{name}").run), name


def test_demo_runs_every_method_subpackage_that_has_a_demo_module():
    from leanops.demo import method_demos

    for name in method_demos():
        assert callable(importlib.import_module(f"leanops.{name}.demo").section), name
