"""The demo-model training script, on its tiny recipe (seconds): corpus split, tokenizer, LLM, three
distilled SSMs, report, cache and reload."""
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from leanops.minions import Minions, demo_models  # noqa: E402
from leanops.minions.train_demo_models import main  # noqa: E402


def test_corpus_split_is_disjoint_and_stable():
    train, held = demo_models.corpus_files(1.0)
    assert train and held and not set(train) & set(held)
    assert all(demo_models.is_held_out(p) for p in held) and not any(demo_models.is_held_out(p) for p in train)
    assert demo_models.corpus_files(1.0) == (train, held)


def test_tiny_training_run_caches_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANOPS_CACHE", str(tmp_path))
    main(["--mode", "tiny"])
    llm, ssms, tok, report = demo_models.load("tiny")
    assert (tmp_path / "minions" / "tiny" / "report.json").exists()
    assert report["llm"]["steps"] > 0 and report["llm"]["held_out_ppl"] > 1
    assert len(ssms) == 3 and all(s["held_out_ppl"] > 1 for s in report["ssms"])
    assert set(report["acceptance"]) == {"ssm0", "ssm1", "ssm2", "vote_tokens_per_pass"}
    assert all(0 <= report["acceptance"][f"ssm{i}"] <= 1 for i in range(3))
    assert llm.config.vocab_size == ssms[0].config.vocab_size == tok.get_vocab_size()
    ids = demo_models.held_out_prompts(tok, 2, 8)
    llm.generation_config.eos_token_id = None  # decode a fixed length, as the engine does without eos
    out = Minions(llm, ssms).generate(ids, max_new_tokens=6)
    want = torch.cat([llm.generate(ids[i: i + 1], attention_mask=torch.ones_like(ids[i: i + 1]), max_new_tokens=6,
                                   do_sample=False, pad_token_id=0) for i in range(2)])
    assert torch.equal(out, want)
    main(["--mode", "tiny"])  # cached: returns without training again
    assert demo_models.load("tiny")[3]["total_seconds"] == report["total_seconds"]


def test_demo_section_runs_and_flags_degenerate_text(tmp_path, monkeypatch, capsys):
    """`leanops demo`'s Minions section on the tiny models: it times the same-runner rows, checks the tokens
    and says whether the LLM's text is degenerate (then it makes no speed claim from it)."""
    from leanops.demo import _distinct_4grams, _minions

    monkeypatch.setenv("LEANOPS_CACHE", str(tmp_path))
    _minions(True, modes=("tiny",), train="tiny")
    out = capsys.readouterr().out
    assert "on the same lean runner: Minions default" in out and "one SSM with fixed gamma 4" in out
    assert "Minions True" in out  # the engine's tokens equal HF greedy's
    assert ("degenerate here" in out) != ("(not degenerate)" in out)
    assert _distinct_4grams(torch.tensor([[1, 2, 3, 4] * 5])) == 4 / 17  # repeats itself
    assert _distinct_4grams(torch.arange(20)[None]) == 1.0
