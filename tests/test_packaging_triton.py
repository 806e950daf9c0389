"""Importing leanops never fails because of triton: missing, broken or mismatched, the Triton backend is left out,
the ops run on the C++ kernels (or the reference), and build_info() says why."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from leanops import _backend

# Runs in a fresh interpreter after the set-up lines: import leanops, run ops, report what it saw.
PROBE = textwrap.dedent("""
    import json, warnings
    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import leanops
    from leanops import _backend
    m = torch.randn(2, 11, 4)
    src, dst, unm = leanops.bipartite_match(m, 3)
    x, size = leanops.merge_wavg(m, None, src, dst, unm)
    try:
        leanops.bipartite_match(m, 3, backend="triton")
        forced = "ran"
    except ValueError as exc:
        forced = str(exc)
    info = leanops.build_info()
    print(json.dumps({"triton": info["triton"], "backends": info["backends"], "forced": forced,
                      "default": _backend.choose(m, None), "merged": list(x.shape),
                      "warnings": [str(w.message) for w in caught if "Triton" in str(w.message)]}))
""")


def _probe(tmp_path, setup="", files=None):
    """Run PROBE after ``setup``, with ``files`` ({relative path: text}) on PYTHONPATH first."""
    for rel, text in (files or {}).items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.pop("LEANOPS_QUIET", None)
    out = subprocess.run([sys.executable, "-c", setup + PROBE], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_fell_back(res, reason):
    assert res["triton"].startswith("unavailable: ") and reason in res["triton"], res["triton"]
    assert "triton" not in res["backends"]
    assert res["default"] == ("cpp" if "cpp" in res["backends"] else "reference")
    assert res["merged"] == [2, 8, 4]
    assert res["forced"].startswith("backend='triton' is not available: ") and reason in res["forced"]


# Makes ``import triton`` fail exactly as it does where triton is not installed.
NO_TRITON = textwrap.dedent("""
    import importlib.abc, sys
    class NoTriton(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "triton":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoTriton())
""")


def test_missing_triton(tmp_path):
    res = _probe(tmp_path, setup=NO_TRITON)
    _assert_fell_back(res, "import triton failed (ModuleNotFoundError: No module named 'triton')")
    assert res["warnings"] == []  # no triton is normal (CPU machines, macOS): no warning


def test_triton_that_fails_to_import_its_language_module(tmp_path):
    res = _probe(tmp_path, files={
        "triton/__init__.py": "__version__ = '3.9.0'\n",
        "triton/language/__init__.py": "raise ImportError(\"cannot import name 'core' from 'triton.language'\")\n",
    })
    _assert_fell_back(res, "cannot import name 'core'")
    assert len(res["warnings"]) == 1


def test_triton_without_what_the_kernels_use(tmp_path):
    # Imports cleanly, but has no triton.jit: the first kernel module fails, and that is the reason given.
    res = _probe(tmp_path, files={"triton/__init__.py": "__version__ = '3.9.0'\n",
                                  "triton/language/__init__.py": "float32 = 'fp32'\n"})
    _assert_fell_back(res, "loading leanops.triton_kernels.merge failed (AttributeError")


def test_triton_not_matching_the_one_torch_pins(monkeypatch):
    pytest.importorskip("triton")
    import triton

    monkeypatch.setattr(_backend, "_torch_triton_pin", lambda: "1.0.0")
    problem = _backend._triton_problem()
    assert problem == (f"triton {triton.__version__} does not match the triton 1.0.0 that torch "
                       f"{_backend.torch.__version__} was built with")
    monkeypatch.setattr(_backend, "_torch_triton_pin", lambda: ".".join(triton.__version__.split(".")[:2]) + ".99")
    assert _backend._triton_problem() is None  # same major.minor: accepted


def test_torch_triton_pin_reads_torch_metadata(monkeypatch):
    reqs = ["filelock", "triton==3.2.0; platform_system == \"Linux\" and platform_machine == \"x86_64\"", "sympy"]
    monkeypatch.setattr(_backend.importlib.metadata, "requires", lambda name: reqs)
    assert _backend._torch_triton_pin() == "3.2.0"
    monkeypatch.setattr(_backend.importlib.metadata, "requires", lambda name: ["pytorch-triton==3.3.0+git96316ce5"])
    assert _backend._torch_triton_pin() == "3.3.0+git96316ce5"
    monkeypatch.setattr(_backend.importlib.metadata, "requires", lambda name: ["filelock", "sympy>=1.13"])
    assert _backend._torch_triton_pin() is None


def test_build_info_names_the_triton_in_use():
    import leanops

    info = leanops.build_info()
    if _backend.triton_available():
        import triton

        assert info["triton"] == triton.__version__ and "triton" in info["backends"]
    else:
        assert info["triton"] == f"unavailable: {_backend.triton_error()}"
