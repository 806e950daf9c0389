"""leanops.blend simulator, click models, policies, tuning, bench providers and the experiment on a tiny config."""
import json
import math

import pytest
import torch

from leanops.blend import click_model as cm
from leanops.blend.policies import fixed_slots, ranked
from leanops.blend.simulator import Simulator, log_traffic
from leanops.blend.tuning import golden_section, penalised, spsa


def test_true_click_model_externalities_hand_made():
    sim = Simulator(decay=1.0, quit=0.0, crowding=1.0, affinity=0.0, ad_penalty=0.0)
    user = torch.tensor([[1.0, 0.0]])
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    orth = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    q = torch.zeros(1, 2)
    ad = torch.zeros(1, 2, dtype=torch.bool)
    # a = sigmoid(0) = 0.5; similar neighbours: share = 1 / (1 + 1 * 1^2 * 0.5) -> ctr = 0.5 / 1.5
    assert sim.page_ctr(user, same, q, ad)[0].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert sim.page_ctr(user, orth, q, ad)[0].tolist() == pytest.approx([0.5, 0.5])
    sim = Simulator(decay=0.5, quit=0.5, crowding=0.0, affinity=0.0, ad_penalty=0.0)
    # e_1 = decay * (1 - quit * (1 - a_0)) = 0.5 * 0.75
    assert sim.page_ctr(user, orth, q, ad)[0].tolist() == pytest.approx([0.5, 0.5 * 0.375])


def small_world(seed=0, n_requests=60):
    sim = Simulator()
    g = torch.Generator().manual_seed(seed)
    req = sim.sample(n_requests, 3, 6, g)
    logs = log_traffic(sim, req, 6, 4, 2, g)
    return sim, req, logs, g


def test_logging_policy_is_feasible_and_clicks_follow_truth():
    sim, req, logs, _ = small_world()
    is_ad = req.is_ad[logs.request[:, None], logs.slates]
    assert (is_ad.sum(1) <= 2).all()
    assert all(len(set(row)) == 4 for row in logs.slates.tolist())
    assert abs(float(logs.clicks.mean() - logs.true_ctr.mean())) < 0.03
    # organic items of every request are sorted by the recommender's estimate
    est = sim.affinity * (req.topic * req.user[:, None]).sum(-1) + req.quality_obs
    assert (est[:, 3:].diff(dim=1) <= 1e-6).all()


def test_click_models_learn_and_list_aware_beats_position_only():
    sim, req, logs, g = small_world(n_requests=150)
    torch.manual_seed(0)
    scores = {}
    for name, cls in cm.MODELS.items():
        model = cm.train(cls(req.item_features().shape[-1], req.user.shape[-1], 4), req, logs, epochs=5, batch=64,
                         generator=g)
        scores[name] = cm.metrics(cm.predict(model, req, logs.request, logs.slates), logs.clicks)
    assert scores["list-aware (ClickModel)"]["log_loss"] < scores["position-only"]["log_loss"]
    assert 0.5 < scores["list-aware (ClickModel)"]["auc"] <= 1.0


def test_metrics_hand_made():
    p = torch.tensor([0.1, 0.9, 0.8, 0.2])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    m = cm.metrics(p, y)
    assert m["auc"] == 1.0
    assert m["log_loss"] == pytest.approx(-(2 * math.log(0.9) + math.log(0.8) + math.log(0.8)) / 4, rel=1e-6)
    assert cm.calibration_error(p.double().numpy(), y.numpy(), bins=2) == pytest.approx(0.15)


def test_gsp_baselines_hand_made():
    pctr = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    bids = torch.tensor([2.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    is_ad = torch.tensor([True, True, False, False, False])
    # ranked: scores ad0 1.0, ad1 0.4, organic vb_org * pctr = 0.6, 0.4, 0.2 -> ad0 first, pays max(0.4, 0.6)/0.5
    slate, price = ranked(pctr, bids, is_ad, 3, 2, 0.0, 2.0)
    assert slate.tolist() == [0, 2, 3] and price.tolist() == pytest.approx([1.2, 0.0, 0.0])
    # fixed slots: only slot 1 (2nd) may hold an ad; ad0 (1.0) beats the organic it displaces there (item 3:
    # 2 * 0.2 = 0.4) and pays max(next ad 0.4, displaced 0.4) / 0.5 = 0.8
    slate, price = fixed_slots(pctr, bids, is_ad, 3, 1, 0.0, 2.0)
    assert slate.tolist() == [2, 0, 3] and price.tolist() == pytest.approx([0.0, 0.8, 0.0])
    # with a high organic virtual bid the organic item keeps the slot
    slate, price = fixed_slots(pctr, bids, is_ad, 3, 1, 0.0, 6.0)
    assert slate.tolist() == [2, 3, 4] and price.tolist() == [0.0, 0.0, 0.0]


def test_golden_section_and_spsa_find_maxima():
    x, y, hist = golden_section(lambda v: -(v - 1.3) ** 2, 0.0, 4.0, iters=20)
    assert x == pytest.approx(1.3, abs=1e-3) and len(hist) == 22
    best, val, _ = spsa(lambda v: -(v[0] - 1.0) ** 2 - (v[1] - 2.0) ** 2, [0.0, 0.0], [(-1, 3), (-1, 3)], iters=60,
                        a=0.5, c=0.2, generator=torch.Generator().manual_seed(0))
    assert val > -0.05
    assert penalised(1.0, 0.8, 1.0, 0.9, 10.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="hi > lo"):
        golden_section(lambda v: v, 1.0, 1.0)


def test_bench_providers_agree():
    from leanops.bench.blend import providers

    torch.manual_seed(0)
    sim, req, logs, g = small_world(n_requests=2)
    model = cm.ClickModel(req.item_features().shape[-1], req.user.shape[-1], 4)
    import leanops.bench.blend as bb

    old = dict(bb.PAGE)
    bb.PAGE.update(n_ads=3, n_org=6, n_slots=4, max_ads=2)
    try:
        results = {name: make(0)() for name, make in providers(model, req).items()}
    finally:
        bb.PAGE.update(old)
    first = next(iter(results.values()))
    for r in results.values():
        assert torch.equal(r.slate, first.slate) and torch.equal(r.price_per_click, first.price_per_click)


def test_experiment_tiny_config(tmp_path):
    from leanops.blend import experiment

    cfg = dict(log_requests=20, pages_per_request=4, epochs=1, test_requests=3, tune_requests=2, grid=[0.0, 2.0],
               golden_iters=1, spsa_iters=1, exact_checks=1, truth_checks=1, beam_width=3)
    out = experiment.main(["--quick", "--seeds", "1", "--seed", "100", "--out-dir", str(tmp_path),
                           "--config", json.dumps(cfg)])
    assert (tmp_path / "blend-frontier-quick.json").exists() and (tmp_path / "blend-frontier-quick.png").exists()
    r = out["results"][0]
    assert set(r["frontier"]) == set(experiment.POLICIES)
    assert r["truthfulness"]["allow_profitable_deviation_share"] == 0.0
