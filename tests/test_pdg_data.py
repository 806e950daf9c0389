"""leanops.pdg data generator ground truth, metrics on hand-made texts, and the experiment on a tiny config."""
import json

import pytest

from leanops.pdg.data import CATEGORIES, attribute_aspects, generate
from leanops.pdg.metrics import aspect_scores, distinct, evaluate, fact_scores


@pytest.fixture(scope="module")
def cat():
    return generate(n_train=200, n_valid=10, n_test=60, seed=5)


def test_ground_truth(cat):
    train_brands = {p.attributes["brand"] for p in cat.train}
    for p in cat.test_longtail:  # long tail: no reviews, aspects follow from attributes and category
        assert p.reviews == [] and p.aspects == attribute_aspects(cat, p)
        assert (p.attributes["brand"] in train_brands) == p.brand_seen
    assert any(not p.brand_seen for p in cat.test_longtail) and any(not p.brand_seen for p in cat.test_reviewed)
    noisy = sum(p.aspects != attribute_aspects(cat, p) for p in cat.train)
    assert 0 < noisy < len(cat.train)  # attributes predict training aspects only in part
    for p in cat.train:
        assert p.reviews
        said = [a for a in CATEGORIES[p.category]["aspects"]
                if any(ph in r for ph in CATEGORIES[p.category]["aspects"][a] for r in p.reviews)]
        assert set(p.aspects) <= set(said)  # reviews reveal the cared aspects
        for key in ("brand", "colour", "material"):
            assert p.attributes[key] in p.description
        assert aspect_scores(p, p.description)["coverage"] == 1.0
    texts = " ".join(cat.training_texts())
    assert not any(ch in texts for ch in "åøüñéß")  # unseen letters never occur in training


def test_metrics_on_hand_made_text(cat):
    p = cat.train[0]
    a = p.attributes
    text = f"the {a['brand']} thing comes in {a['colour']} {a['material']} . expect {p.aspects[0]} ."
    assert aspect_scores(p, text)["coverage"] == 0.5
    f = fact_scores(p, text)
    assert (f["correct"], f["mentioned"], f["recall"], f["brand"]) == (2, 2, 1.0, 1.0)
    wrong_colour = next(c for c in ("red", "blue") if c != a["colour"])
    f = fact_scores(p, f"{wrong_colour} {a['material']}")
    assert (f["correct"], f["mentioned"], f["brand"]) == (1, 2, 0.0)
    assert distinct(["a b a b"], 1) == 0.5 and distinct(["a b a b"], 2) == pytest.approx(2 / 3)
    scores = evaluate([p], [p.description])
    assert scores["bleu"] == pytest.approx(100.0) and scores["aspect_coverage"] == 1.0
    with pytest.raises(ValueError, match="equal length"):
        evaluate([p], [])


def test_experiment_runs_on_a_tiny_config(tmp_path):
    from leanops.pdg.experiment import run

    cfg = dict(n_train=40, n_valid=2, n_test=6, epochs=1, batch_size=20, d_model=32, vocab_size=150)
    result = run(seeds=2, out_dir=str(tmp_path), cfg=cfg, progress=False)
    assert set(result["summary"]) >= {"APN|longtail|aspect_coverage", "transformer|reviewed|brand_unseen"}
    assert len(result["runs"]) == 2 and all(r["seeds"] <= 2 for r in result["paired"])
    saved = json.loads((tmp_path / "pdg-experiment-custom.json").read_text())
    assert saved["seeds"] == [0, 1] and (tmp_path / "pdg-experiment-custom.png").exists()
