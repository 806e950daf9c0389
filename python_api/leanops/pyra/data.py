"""A text classification task from real text that ships with Python: docstrings of the standard library,
labelled by the top-level package they come from.

Docstrings (module, class, function) are read from the package source files with ``ast`` (nothing is
imported or downloaded), whitespace-normalised, and deduplicated (a text found more than once is dropped,
so no text is in two classes or two splits). The split is by source file: a file's docstrings are all in
train or all in test, chosen by a hash of the file's path (fixed, not seeded). Classes are the packages with
the most docstrings whose files give both splits.
"""
from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
from collections import Counter, defaultdict
from dataclasses import dataclass

_SKIP = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "turtledemo", "pydoc_data"}


@dataclass
class DocstringTask:
    classes: list[str]
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    train_files: int
    test_files: int


def _docstrings(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                out.append(" ".join(doc.split()))
    return out


def _package_files(stdlib: str) -> dict[str, list[str]]:
    """Top-level package -> its .py files (relative paths), for packages (directories) of the stdlib."""
    out = {}
    for name in sorted(os.listdir(stdlib)):
        root = os.path.join(stdlib, name)
        if name in _SKIP or not os.path.isfile(os.path.join(root, "__init__.py")):
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
            files += [os.path.relpath(os.path.join(dirpath, f), stdlib) for f in sorted(filenames) if f.endswith(".py")]
        out[name] = files
    return out


def _in_test(relpath: str, test_fraction: float) -> bool:
    h = int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < test_fraction


def stdlib_docstring_task(num_classes: int = 12, min_words: int = 8, max_per_class: int | None = None,
                          test_fraction: float = 0.3, stdlib: str | None = None) -> DocstringTask:
    """The task (see the module doc). ``max_per_class`` caps each class's train texts (the first ones in file
    order), for quick runs; the test split is always whole."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    stdlib = stdlib or sysconfig.get_paths()["stdlib"]
    per_file: dict[tuple[str, str], list[str]] = {}
    for package, files in _package_files(stdlib).items():
        for rel in files:
            docs = [d for d in _docstrings(os.path.join(stdlib, rel)) if len(d.split()) >= min_words]
            if docs:
                per_file[(package, rel)] = docs
    counts = Counter(d for docs in per_file.values() for d in docs)
    texts: dict[str, dict[bool, list[str]]] = defaultdict(lambda: {False: [], True: []})
    for (package, rel), docs in per_file.items():
        texts[package][_in_test(rel, test_fraction)] += [d for d in dict.fromkeys(docs) if counts[d] == 1]
    usable = [p for p, split in texts.items() if len(split[False]) >= 10 and len(split[True]) >= 5]
    classes = sorted(sorted(usable, key=lambda p: -(len(texts[p][False]) + len(texts[p][True])))[:num_classes])
    if len(classes) < num_classes:
        raise ValueError(f"only {len(classes)} stdlib packages have enough docstrings for num_classes={num_classes}")
    task = DocstringTask(classes, [], [], [], [], 0, 0)
    for label, package in enumerate(classes):
        for is_test, (xs, ys) in ((False, (task.train_texts, task.train_labels)),
                                  (True, (task.test_texts, task.test_labels))):
            chosen = texts[package][is_test] if is_test else texts[package][is_test][:max_per_class]
            xs += chosen
            ys += [label] * len(chosen)
    files = [(p, rel) for (p, rel) in per_file if p in classes]
    task.test_files = sum(_in_test(rel, test_fraction) for _, rel in files)
    task.train_files = len(files) - task.test_files
    return task
