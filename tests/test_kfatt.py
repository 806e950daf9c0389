"""KFAtt and DIN modules, the CTR model, the ground-truth generator and the AUC metric."""
import pytest
import torch

import leanops
from leanops import kfatt
from leanops.kfatt.train import auc


def _jagged(bsz=4, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([3, 0, 5, 1][:bsz])
    offsets = leanops.lengths_to_offsets(lengths)
    return torch.randn(bsz, e, generator=g), torch.randn(int(offsets[-1]), e, generator=g), offsets, lengths


@pytest.mark.parametrize("scorer", ["dot", "mlp"])
@pytest.mark.parametrize("variant", ["base", "freq"])
def test_kfattention_matches_its_definition(variant, scorer):
    """The module equals the MAP estimate written out: prior entry + softmax over behaviours (per head)."""
    torch.manual_seed(0)
    query, keys, offsets, _ = _jagged()
    mod = kfatt.KFAttention(8, 8, heads=2, head_dim=4, variant=variant, scorer=scorer).double()
    counts = torch.tensor([1, 3, 1, 2, 1, 1, 4, 1, 1]) if variant == "freq" else None
    got = mod(query.double(), keys.double(), offsets, counts)
    h, d = 2, 4
    v = mod.v_proj(keys.double()).view(-1, h, d)
    prior = mod.prior(query.double()).view(-1, h, 1 + d)
    outs = []
    for b in range(4):
        sl = slice(int(offsets[b]), int(offsets[b + 1]))
        qb, kb = query.double()[b].expand(int(offsets[b + 1] - offsets[b]), -1), keys.double()[sl]
        if scorer == "dot":  # log precision = q.k / sqrt(d)
            q, k = mod.q_proj(qb).view(-1, h, d), mod.k_proj(kb).view(-1, h, d)
            s = (q * k).sum(-1) * d ** -0.5
        else:  # log precision from DIN's local activation unit
            s = mod.unit.mlp(torch.cat([qb, kb, qb - kb, qb * kb], dim=-1))
        if variant == "freq":
            n = counts[sl].double()[:, None]
            w = 1.0 / (torch.exp(-s) + torch.exp(mod.log_obs_var)[None, :] / n)  # 1/(sigma^2 + sigma'^2/n)
        else:
            w = torch.exp(s)
        w0 = torch.exp(prior[b, :, 0])  # prior precision 1/sigma_0^2
        est = (w0[:, None] * prior[b, :, 1:] + torch.einsum("th,thd->hd", w, v[sl])) / (w0 + w.sum(0))[:, None]
        outs.append(est.reshape(-1))
    torch.testing.assert_close(got, mod.out(torch.stack(outs)))


def test_kfattention_without_relevant_history_falls_back_on_the_prior():
    torch.manual_seed(0)
    mod = kfatt.KFAttention(4, 4, heads=1, head_dim=4).double()
    query = torch.randn(1, 4, dtype=torch.float64)
    keys = torch.randn(6, 4, dtype=torch.float64)
    with torch.no_grad():  # behaviours orthogonal to the query's projection -> tiny precisions
        mod.k_proj.weight.zero_()
        mod.k_proj.bias.fill_(-1.0)
        mod.q_proj.weight.zero_()
        mod.q_proj.bias.fill_(50.0)
        mod.prior[-1].bias[0] = 5.0
    out = mod(query, keys, torch.tensor([0, 6]))
    prior_value = mod.prior(query).view(1, 1, 5)[..., 1:].reshape(1, 4)
    torch.testing.assert_close(out, mod.out(prior_value), rtol=1e-6, atol=1e-6)


def test_din_pooling_normalised_and_not():
    torch.manual_seed(0)
    query, _, _, lengths = _jagged()
    keys = torch.randn(4, 5, 8)
    for norm in (False, True):
        din = kfatt.DINAttentionPooling(8, weight_normalization=norm)
        out = din(query, keys, lengths)
        assert out.shape == (4, 8)
        assert torch.equal(out[1], torch.zeros(8))  # empty history pools to zero
        keys2 = keys.clone()
        keys2[0, 3:] = 100.0  # padding must not matter
        torch.testing.assert_close(din(query, keys2, lengths)[0], out[0])


@pytest.mark.parametrize("pooling", kfatt.POOLINGS)
def test_ctr_model_trains_and_beats_chance(pooling):
    data = kfatt.generate(4000, new_demand=0.3, repeat_prob=0.5, n_items=40, n_categories=10, seed=0)
    train, test = data.split(3000)
    model = kfatt.train_model(train, pooling, epochs=3, seed=0)
    score = auc(kfatt.predict(model, test), test.label)
    # chance is 0.5 (std ~0.02 on 1000 test rows); the Bayes-optimal predictor reaches 0.73
    assert 0.56 < score < auc(test.bayes_prob, test.label) + 0.02


def test_generator_ground_truth_properties():
    data = kfatt.generate(3000, new_demand=0.4, repeat_prob=1.0, n_items=60, n_categories=12, seed=3)
    assert abs(float(data.new_demand.float().mean()) - 0.4) < 0.05
    cats, nf = data.item_category, data.n_feedback
    for i in range(100):
        hist = data.history[i, : int(data.lengths[i])]
        hist_cats = set(cats[hist // nf].tolist())
        if bool(data.new_demand[i]):  # new demand: the query's category is absent from the history
            assert int(cats[data.candidate[i]]) not in hist_cats
        else:
            assert int(cats[data.candidate[i]]) in hist_cats
        assert int(torch.unique(hist, return_counts=True)[1].max()) >= 10  # repeat_prob=1: a repeated behaviour
    # the Bayes-optimal prediction is informative, and no better than knowing the click probability itself
    bayes, oracle = auc(data.bayes_prob, data.label), auc(data.true_prob, data.label)
    assert 0.6 < bayes < oracle
    with pytest.raises(ValueError, match="new_demand"):
        kfatt.generate(10, new_demand=1.5)


def test_bayes_prediction_is_the_posterior_of_the_distinct_feedbacks():
    """bayes_prob is E[sigmoid(a)] under the posterior that shrinks the distinct relevant feedbacks to the prior."""
    from leanops.kfatt.data import posterior_click_prob

    mean, var = torch.tensor([0.3, -1.0]).numpy(), torch.tensor([0.5, 0.01]).numpy()
    z = torch.randn(400000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for m, v, got in zip(mean, var, posterior_click_prob(mean, var)):
        assert got == pytest.approx(float(torch.sigmoid(m + v ** 0.5 * z).mean()), abs=2e-3)
    # a query without relevant history gets the same prediction whatever the history holds
    data = kfatt.generate(4000, new_demand=1.0, repeat_prob=0.5, n_items=40, n_categories=10, seed=1)
    cats = data.item_category[data.candidate]
    for c in torch.unique(cats)[:5].tolist():
        assert torch.unique(data.bayes_prob[cats == c]).numel() == 1


def test_auc_metric():
    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert auc(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])) == pytest.approx(0.5)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="variant must be"):
        kfatt.KFAttention(4, 4, variant="kalman")
    with pytest.raises(ValueError, match="heads must be"):
        kfatt.KFAttention(4, 4, heads=0)
    with pytest.raises(ValueError, match="scorer must be"):
        kfatt.KFAttention(4, 4, scorer="cosine")
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        kfatt.KFAttention(4, 6, scorer="mlp")
    with pytest.raises(ValueError, match="n_feedback must be"):
        kfatt.CTRModel(torch.zeros(5, dtype=torch.long), "din", n_feedback=0)
    with pytest.raises(ValueError, match="pooling must be one of"):
        kfatt.CTRModel(torch.zeros(5, dtype=torch.long), "mean")
    mod = kfatt.KFAttention(4, 4, variant="freq")
    with pytest.raises(ValueError, match="counts must be"):
        mod(torch.randn(1, 4), torch.randn(3, 4), torch.tensor([0, 3]), torch.ones(2))
