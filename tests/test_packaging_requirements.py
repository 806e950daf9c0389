"""Version floors: torch for the package, transformers for the ToMe adapters; each fails with a message naming
the version needed (checked with monkeypatched versions, and once for real in a fresh interpreter)."""
import os
import re
import subprocess
import sys

import pytest
import torch

from leanops import _requirements
from leanops._requirements import TORCH_MIN, TRANSFORMERS_MIN, at_least, check_torch, check_transformers, release


@pytest.mark.parametrize("text, expected", [("2.13.0+cpu", (2, 13, 0)), ("2.6.0a0+git1234", (2, 6, 0)),
                                            ("5.9", (5, 9)), ("v3.2.0", (3, 2, 0)), ("4.57.6.dev0", (4, 57, 6))])
def test_release_parses_the_numeric_part(text, expected):
    assert release(text) == expected


def test_release_rejects_text_that_is_no_version():
    with pytest.raises(ValueError, match="not a version"):
        release("unknown")


@pytest.mark.parametrize("version, floor, ok", [("2.6.0", "2.6", True), ("2.6", "2.6.0", True), ("2.5.1", "2.6", False),
                                                ("2.10.0", "2.6", True), ("10.0", "9.99", True), ("5.8.1", "5.9", False)])
def test_at_least_compares_numerically(version, floor, ok):
    assert at_least(version, floor) is ok


def test_installed_torch_meets_the_floor_and_has_what_it_is_for():
    assert at_least(torch.__version__, TORCH_MIN), torch.__version__
    assert hasattr(torch.library, "triton_op") and hasattr(torch.library, "wrap_triton")


@pytest.mark.parametrize("old", ["2.5.1", "2.4.0+cpu", "1.13.1"])
def test_old_torch_is_refused_naming_the_version(monkeypatch, old):
    monkeypatch.setattr(torch, "__version__", old)
    with pytest.raises(ImportError, match=re.escape(f"torch>={TORCH_MIN}") + ".*" + re.escape(f"found torch {old}")):
        check_torch()


@pytest.mark.parametrize("new", ["2.6.0", "2.13.0+cpu", "2.7.0a0+gitabc"])
def test_new_enough_torch_passes(monkeypatch, new):
    monkeypatch.setattr(torch, "__version__", new)
    check_torch()


def test_import_leanops_with_an_old_torch_raises_import_error():
    code = "import torch\ntorch.__version__ = '2.5.1'\nimport leanops\n"
    env = {**os.environ, "LEANOPS_QUIET": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert f"ImportError: leanops needs torch>={TORCH_MIN}" in out.stderr and "found torch 2.5.1" in out.stderr


@pytest.mark.parametrize("old", ["5.8.1", "4.57.6", "4.40.0"])
def test_old_transformers_is_refused_naming_the_version(old):
    with pytest.raises(ImportError, match=re.escape(f"transformers>={TRANSFORMERS_MIN}") + ".*" + re.escape(f"found transformers {old}")):
        check_transformers(old)


def test_missing_transformers_is_refused_with_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"leanops\[hf\]"):
        check_transformers()


def test_tome_patch_refuses_an_old_transformers_and_leaves_the_model_alone(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from leanops import tome

    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 image_size=32, patch_size=16)
    model = transformers.ViTModel(cfg).eval()
    transformers = sys.modules["transformers"]  # building a model can swap transformers' lazy module object
    monkeypatch.setattr(transformers, "__version__", "5.8.1")
    with pytest.raises(ImportError, match=re.escape(f"transformers>={TRANSFORMERS_MIN}") + ".*found transformers 5.8.1"):
        tome.patch(model, r=2)
    assert not hasattr(model, "_tome_state")
    assert all(not type(m).__name__.startswith("ToMe") for m in model.modules())
    monkeypatch.setattr(transformers, "__version__", "5.9.0")
    tome.patch(model, r=2)  # the floor itself is accepted
    assert hasattr(model, "_tome_state")


def test_installed_transformers_meets_the_floor():
    transformers = pytest.importorskip("transformers")
    assert at_least(transformers.__version__, TRANSFORMERS_MIN), transformers.__version__


def test_cli_names_the_extra_when_an_optional_package_is_missing():
    assert _requirements.missing_extra_message(ModuleNotFoundError("x", name="tqdm"), "demo") == (
        "leanops demo needs tqdm, which is not installed: pip install 'leanops[hf]'")
    assert "leanops[bench]" in _requirements.missing_extra_message(
        ModuleNotFoundError("x", name="matplotlib.pyplot"), "bench")
    assert _requirements.missing_extra_message(ModuleNotFoundError("x", name="leanops._C"), "demo") is None
    code = ("import sys\nsys.modules['tqdm'] = None\nfrom leanops.cli import main\n"
            "sys.exit(main(['demo', '--quick']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LEANOPS_QUIET": "1"})
    assert out.returncode == 1, out.stderr
    assert "leanops demo needs tqdm, which is not installed: pip install 'leanops[hf]'" in out.stderr
