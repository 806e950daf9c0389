"""The bandit experiment's main function on a tiny configuration: table, paired differences, plain
sentences where an expectation fails, JSON and PNG."""
import json
import os

import numpy as np

from leanops.bandit import experiment


def test_experiment_runs_tiny_config_and_writes_results(tmp_path, capsys):
    setting = {"name": "tiny", "p": (0.6, 0.2, 0.1), "delay_means": (30, 20, 10), "delay_dist": "exp"}
    out = experiment.run(seeds=2, seed=200, n=300, batch=100, workers=1, out_dir=str(tmp_path), settings=[setting])
    printed = capsys.readouterr().out
    assert "known ground truth" in printed and "paired" in printed
    res = out["results"][0]
    assert {r["policy"] for r in res["rows"]} == set(experiment.POLICY_NAMES)
    assert {d["policy"] for d in res["paired_vs_dts_em"]} == set(experiment.POLICY_NAMES) - {"dts_em"}
    ab = next(r for r in res["rows"] if r["policy"] == "ab")
    assert abs(ab["final_regret_mean"] - (100 * 0.4 + 100 * 0.5)) < 1e-9  # balanced split: exact
    saved = json.loads((tmp_path / "bandit-experiment-full.json").read_text())
    assert saved["seeds"] == [200, 201] and os.path.getsize(tmp_path / "bandit-experiment-full.png") > 0
    for v in out["verdicts"]:
        assert v in printed


def test_verdicts_say_plainly_when_an_expectation_fails():
    rng = np.random.default_rng(0)
    means = dict(dts_known=20.0, dts_em=40.0, ts_naive=30.0, ducb=100.0, dbucb=15.0, bayes_grid=0.0, ab=90.0)
    final = {k: m + rng.normal(0, 1, 10) for k, m in means.items()}
    final["bayes_grid"] = final["dts_em"] - 0.2 + np.tile([1.0, -1.0], 5)  # paired mean -0.2, std 1.05: a tie
    cpu = {k: 1.0 for k in final} | {"bayes_grid": 3.0}
    text = "\n".join(experiment.verdicts(final, cpu, "S"))
    assert "ties bayes_grid" in text
    assert "NOT as expected: dbucb has lower final regret than D-TS (known delays)" in text
    assert "NOT as expected: naive TS does not lose to D-TS (EM)" in text
    assert "NOT as expected: uniform A/B is not the worst; ducb" in text
    good = dict(means, ts_naive=60.0, dbucb=45.0, bayes_grid=50.0, ab=200.0, ducb=80.0)
    final = {k: m + rng.normal(0, 1, 10) for k, m in good.items()}
    assert experiment.verdicts(final, cpu, "S") == []
