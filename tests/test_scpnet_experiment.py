"""The experiment's main function on a tiny config, its verdict sentences, the demo and the benchmark."""
import json

import pytest

from leanops.scpnet import experiment
from leanops.scpnet.train import VARIANTS

TINY = dict(scenes=("kitchen", "food"), train=40, test=30, epochs=2, settings=("single",))


def fake_summary(scp, splc, shuffled, bce=0.3):
    per_seed = []
    for k in range(3):
        r = {v: {"mAP": 0.5} for v in VARIANTS}
        r["SCPNet"]["mAP"], r["SPLC"]["mAP"] = scp + 0.01 * k, splc + 0.01 * k
        r["SCPNet shuffled names"]["mAP"], r["assume negative (BCE)"]["mAP"] = shuffled, bce
        r["fully labelled (ceiling)"]["mAP"] = 0.95
        per_seed.append(r)
    return experiment.summarise(per_seed)


def test_verdicts_say_plainly_when_expectations_fail():
    good = experiment.verdicts(fake_summary(0.7, 0.6, 0.61), "single")
    assert len(good) == 1 and good[0].startswith("[single] As expected")
    bad = experiment.verdicts(fake_summary(0.55, 0.6, 0.58), "single")
    assert any("does not beat SPLC" in s for s in bad) and any("cannot be judged" in s for s in bad)
    kept = experiment.verdicts(fake_summary(0.7, 0.6, 0.68), "single")
    assert any("keeps 70% of its gain" in s for s in kept)


def test_summarise_pairs_are_paired_differences():
    s = fake_summary(0.7, 0.6, 0.61)
    pair = next(p for p in s["pairs"] if (p["a"], p["b"]) == ("SCPNet", "SPLC"))
    assert pair["mean"] == pytest.approx(0.1) and pair["std"] == pytest.approx(0.0, abs=1e-12) and pair["won"] == 3


def test_experiment_runs_on_a_tiny_config(tmp_path, capsys):
    doc = experiment.run(seeds=2, seed=5, out_dir=str(tmp_path), cfg=TINY)
    out = capsys.readouterr().out
    assert "known ground truth" in out and "paired difference" in out
    res = doc["results"]["single"]
    assert [list(r) for r in res["per_seed"]] == [list(VARIANTS)] * 2 and doc["config"]["seeds"] == [5, 6]
    assert all(0 <= r[v]["mAP"] <= 1 for r in res["per_seed"] for v in VARIANTS) and res["verdicts"]
    saved = json.loads((tmp_path / "scpnet-full.json").read_text())
    assert saved["results"]["single"]["summary"]["table"].keys() == set(VARIANTS)
    assert (tmp_path / "scpnet-full.png").stat().st_size > 1000


def test_cli_rejects_bad_seeds():
    with pytest.raises(SystemExit):
        experiment.main(["--seeds", "0"])


def test_bench_quick_runs(tmp_path, capsys):
    from leanops.bench import scpnet as bench

    result = bench.run(quick=True, out_dir=str(tmp_path), repeats=1)
    names = [r["provider"] for r in result["rows"]]
    assert bench.ANCHOR_TRAIN in names and "GCN alone (3 layers over G)" in names
    assert 0 < result["gcn_share_of_scpnet_train_step"]["ratio"] < 1
    assert "GCN share" in capsys.readouterr().out


def test_demo_section_is_discovered_and_runs(capsys):
    from leanops.demo import method_demos
    from leanops.scpnet.demo import section

    assert "scpnet" in method_demos()
    section(True, n_train=40, epochs=1)
    out = capsys.readouterr().out
    assert "fork" in out and "SCPNet" in out and "SPLC" in out
