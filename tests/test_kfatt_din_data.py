"""The DIN-assumption generator (leanops.kfatt.din_data): labels drawn from the stated truth, the truth is
DIN's attention-weighted sum of the data's behaviours (no prior, repeats count), users with several
impressions; and the users of KFAtt's own generator."""
import numpy as np
import pytest
import torch

from leanops import kfatt
from leanops.kfatt.data import feedback_value
from leanops.kfatt.din_data import click_logits, generate_din, relevance

BIAS, SCALE = -0.5, 0.5


def _logit(p):
    p = p.double()
    return torch.log(p) - torch.log1p(-p)


def _recomputed_logits(data, neighbour=0.5):
    """The click logit of every impression, recomputed from what the model sees (history ids, candidate)."""
    nf, cats = data.n_feedback, data.item_category.numpy()
    weights = relevance(len(np.unique(cats)), neighbour)
    out = []
    for i in range(data.label.shape[0]):
        hist = data.history[i, : int(data.lengths[i])].numpy()
        values = feedback_value(hist % nf, nf)
        out.append(click_logits(cats[hist // nf], values, weights, SCALE, BIAS)[cats[int(data.candidate[i])]])
    return torch.tensor(out, dtype=torch.float64)


def test_truth_is_dins_weighted_sum_of_the_visible_behaviours():
    """true_prob = sigmoid(bias + scale * sum_t relevance * value_t), from the history ids alone; it is
    also the Bayes-optimal prediction (nothing hidden)."""
    data = generate_din(2000, new_demand=0.3, repeat_prob=0.7, seed=5)
    torch.testing.assert_close(data.true_prob.double(), torch.sigmoid(_recomputed_logits(data)), rtol=0, atol=1e-6)
    assert torch.equal(data.true_prob, data.bayes_prob)


def test_labels_are_drawn_from_the_true_probability():
    """Calibration: in each tenth of [0, 1] of true_prob, clicks minus expected clicks is within binomial
    noise (4 standard deviations)."""
    data = generate_din(12000, new_demand=0.3, repeat_prob=0.5, seed=6)
    p, y = data.true_prob.double(), data.label.double()
    bins = torch.clamp((p * 10).long(), max=9)
    checked = 0
    for b in range(10):
        sel = bins == b
        if int(sel.sum()) < 100:
            continue
        z = (y[sel] - p[sel]).sum() / torch.sqrt((p[sel] * (1 - p[sel])).sum())
        assert abs(float(z)) < 4.0, f"bin {b}: z = {float(z):.2f}"
        checked += 1
    assert checked >= 6
    # the check has power: labels from a probability shifted by 0.05 fail it
    shifted = torch.clamp(p + 0.05, 0, 1)
    z_all = (y - shifted).sum() / torch.sqrt((shifted * (1 - shifted)).sum())
    assert abs(float(z_all)) > 4.0


def test_no_prior_term():
    """A query with no relevant behaviour (none of its category or the adjacent ones) gets sigmoid(bias)
    whatever its category; with no adjacency every new-demand query does."""
    data = generate_din(2000, new_demand=1.0, repeat_prob=0.5, neighbour=0.0, seed=7)
    assert bool(data.new_demand.all())
    torch.testing.assert_close(data.true_prob, torch.full_like(data.true_prob, 1 / (1 + np.exp(-BIAS))))
    assert len(torch.unique(data.item_category[data.candidate])) > 10  # many query categories, one probability


def test_repeats_and_more_relevant_behaviours_strengthen_the_signal():
    # each occurrence of a relevant behaviour adds its value: n repeats count n times (no frequency cap)
    weights = relevance(10, 0.5)
    cats, values = np.array([3, 3, 3, 3]), np.array([1.0, 1.0, 1.0, 1.0])
    one, four = click_logits(cats[:1], values[:1], weights, SCALE, BIAS), click_logits(cats, values, weights, SCALE, BIAS)
    assert four[3] - BIAS == pytest.approx(4 * (one[3] - BIAS))
    assert four[4] - BIAS == pytest.approx(4 * 0.5 * 1.0 * SCALE)  # adjacent category: half the weight
    assert four[6] == pytest.approx(BIAS)  # unrelated category
    # in the data: with repeats the logits spread further from the bias on queries with relevant history
    spread = {}
    for rep in (0.0, 1.0):
        d = generate_din(3000, new_demand=0.0, repeat_prob=rep, seed=8)
        spread[rep] = float((_logit(d.true_prob) - BIAS).abs().mean())
    assert spread[1.0] > 1.2 * spread[0.0]
    # more same-category behaviours -> a stronger (more spread) signal, unlike an average
    d = generate_din(6000, new_demand=0.0, repeat_prob=0.0, neighbour=0.0, seed=9)
    nf, cats = d.n_feedback, d.item_category
    n_same = torch.tensor([int((cats[d.history[i, : int(d.lengths[i])] // nf] == cats[d.candidate[i]]).sum())
                           for i in range(6000)])
    dev = (_logit(d.true_prob) - BIAS).abs()
    assert float(dev[n_same >= 3].mean()) > 1.4 * float(dev[n_same == 1].mean())


@pytest.mark.parametrize("gen", [kfatt.generate, generate_din])
def test_users_have_several_impressions_sharing_one_history(gen):
    data = gen(1500, new_demand=0.3, repeat_prob=0.5, impressions=(4, 12), seed=2)
    users, counts = torch.unique_consecutive(data.user, return_counts=True)
    assert torch.equal(users, torch.arange(len(users)))  # ids in order, impressions consecutive
    assert int(counts[:-1].min()) >= 4 and int(counts.max()) <= 12  # the last user may be cut short
    for u in range(10):
        rows = (data.user == u).nonzero().squeeze(1)
        assert all(torch.equal(data.history[rows[0]], data.history[r]) for r in rows)
    assert len(torch.unique(data.candidate[data.user == 0])) > 1  # different queries per user


def test_kfatt_generator_with_one_impression_per_user():
    data = kfatt.generate(300, impressions=(1, 1), seed=3)
    assert torch.equal(data.user, torch.arange(300))


def test_generators_reject_bad_arguments():
    with pytest.raises(ValueError, match="impressions"):
        generate_din(10, impressions=(0, 3))
    with pytest.raises(ValueError, match="impressions"):
        kfatt.generate(10, impressions=(5, 2))
    with pytest.raises(ValueError, match="repeats"):
        generate_din(10, repeats=(3, 1))
    with pytest.raises(ValueError, match="new_demand"):
        generate_din(10, new_demand=-0.1)
    with pytest.raises(ValueError, match="n_categories"):
        generate_din(10, n_categories=3)
