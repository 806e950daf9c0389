"""GAUC against hand-computed values, the experiment's verdict sentences, and `--quick` end to end."""
import json
import math

import pytest
import torch

from leanops.kfatt.experiment import main, verdicts
from leanops.kfatt.metrics import auc, gauc


def test_gauc_hand_computed():
    # user 7: pos 0.9 above both negatives -> 1.0 (3 impressions)
    # user 3: pos {0.3, 0.8} vs neg {0.6, 0.1}: 3 of 4 pairs ordered -> 0.75 (4 impressions)
    # user 5: all clicks -> skipped;  user 9: one tie -> 0.5 (2 impressions)
    users = torch.tensor([7, 3, 5, 7, 3, 9, 5, 3, 7, 3, 9, 5])
    scores = torch.tensor([0.9, 0.3, 0.2, 0.2, 0.6, 0.4, 0.7, 0.1, 0.5, 0.8, 0.4, 0.1])
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert gauc(scores, labels, users) == pytest.approx((3 * 1.0 + 4 * 0.75 + 2 * 0.5) / 9)
    # a user with one class only contributes nothing; none with both classes -> NaN
    assert math.isnan(gauc(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 1.0]), torch.tensor([0, 1])))


def test_gauc_equals_impression_weighted_per_user_auc():
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 30, (600,), generator=g)
    scores, labels = torch.rand(600, generator=g), (torch.rand(600, generator=g) < 0.4).float()
    total = weight = 0.0
    for u in torch.unique(users):
        sel = users == u
        if 0 < labels[sel].sum() < sel.sum():
            total += int(sel.sum()) * auc(scores[sel], labels[sel])
            weight += int(sel.sum())
    assert gauc(scores, labels, users) == pytest.approx(total / weight)
    with pytest.raises(ValueError, match="1-D of one length"):
        gauc(scores, labels, users[:-1])


def _gain(mean, wins, runs=3, pooling="kfatt_freq", baseline="din_norm", metric="auc"):
    return {"new_demand": 0.0, "repeat_prob": 0.6, "pooling": pooling, "baseline": baseline, "metric": metric,
            "gain_mean": mean, "gain_std": 0.001, "wins": wins, "runs": runs}


def test_verdicts_say_where_the_expected_result_does_not_hold():
    said = verdicts([_gain(-0.01, 0), _gain(-0.001, 1, baseline="din")], "din")
    assert "NOT match DIN in 1" in said[0] and len(said) == 2
    assert "does not match DIN" in said[1] and "din_norm" in said[1] and "-0.0100" in said[1]
    said = verdicts([_gain(0.004, 3), _gain(0.002, 1, baseline="din")], "kfatt")
    assert "1 of 2" in said[0] and len(said) == 2 and "Expected KFAtt-freq above din" in said[1]
    assert verdicts([_gain(0.004, 3)], "kfatt") == [
        "KFAtt's own data: KFAtt-freq is above both DIN variants in 1 of 1 (setting, metric, baseline) comparisons."]


def test_quick_runs_end_to_end(tmp_path, capsys):
    threads = torch.get_num_threads()
    main(["--quick", "--out", str(tmp_path), "--seed", "100"])
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    for gen in ("kfatt", "din"):
        record = json.loads((tmp_path / f"kfatt-{gen}-data-quick-4000.json").read_text())
        assert (tmp_path / f"kfatt-{gen}-data-quick-4000.png").stat().st_size > 0
        assert record["seeds"] == [100] and "not for reporting" in record["seed_note"]
        poolings = {r["pooling"] for r in record["rows"]}
        assert poolings == {"din", "din_norm", "kfatt_base", "kfatt_freq", "bayes optimal"}
        assert all(0.0 < r["auc"] < 1.0 and 0.0 < r["gauc"] < 1.0 for r in record["rows"])
        assert {g["metric"] for g in record["gains"]} == {"auc", "gauc"}
        assert record["verdicts"][0] in out
    assert "GAUC" in out
