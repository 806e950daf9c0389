"""label_prior and splc_loss against the issue's formulas on hand-made cases, PESSL pieces, and bad input."""
import math

import pytest
import torch

from leanops.scpnet import FlexThresholds, assume_negative_bce, label_prior, partial_bce, pessl_loss, splc_loss


def loop_prior(emb, top_k, p, temperature):
    """The formulas of the issue, element by element in plain Python."""
    c = len(emb)
    cos = [[sum(a * b for a, b in zip(emb[i], emb[j])) / math.sqrt(sum(a * a for a in emb[i]) * sum(b * b for b in emb[j]))
            for j in range(c)] for i in range(c)]
    g = [[0.0] * c for _ in range(c)]
    s = [[0.0] * c for _ in range(c)]
    for i in range(c):
        others = sorted((j for j in range(c) if j != i), key=lambda j: -cos[i][j])[:top_k]
        total = sum(max(cos[i][j], 0.0) for j in others)
        for j in others:
            g[i][j] = p * max(cos[i][j], 0.0) / total if total > 0 else 0.0
        g[i][i] = 1 - p
        support = [j for j in range(c) if g[i][j] > 0]
        z = sum(math.exp(g[i][j] / temperature) for j in support)
        for j in support:
            s[i][j] = math.exp(g[i][j] / temperature) / z
    return torch.tensor(g, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)


def test_label_prior_hand_computed():
    # e0 = (1, 0), e1 = (1, 1), e2 = (0.2, 1): top-1 neighbour of label 0 is label 1 (cos 1/sqrt 2)
    emb = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.2, 1.0]], dtype=torch.float64)
    g, s = label_prior(emb, top_k=1, p=0.2, temperature=0.2)
    assert torch.allclose(g[0], torch.tensor([0.8, 0.2, 0.0], dtype=torch.float64))
    e4, e1 = math.exp(4.0), math.exp(1.0)  # G/T = 0.8/0.2 = 4 and 0.2/0.2 = 1
    assert torch.allclose(s[0], torch.tensor([e4 / (e4 + e1), e1 / (e4 + e1), 0.0], dtype=torch.float64))
    # label 2's nearest is label 1 (cos 0.8321 > 0.1961)
    assert torch.allclose(g[2], torch.tensor([0.0, 0.2, 0.8], dtype=torch.float64))


@pytest.mark.parametrize("top_k,p,t", [(1, 0.2, 0.2), (2, 0.3, 0.5), (4, 0.0, 1.0), (3, 0.9, 0.05)])
def test_label_prior_matches_loop_formula(top_k, p, t):
    gen = torch.Generator().manual_seed(top_k)
    emb = torch.rand(5, 4, generator=gen, dtype=torch.float64) + 0.05  # positive cosines, as text embeddings give
    g, s = label_prior(emb, top_k, p, t)
    g_ref, s_ref = loop_prior(emb.tolist(), top_k, p, t)
    assert torch.allclose(g, g_ref, atol=1e-12) and torch.allclose(s, s_ref, atol=1e-12)
    assert torch.allclose(g.sum(1), torch.ones(5, dtype=torch.float64))
    assert ((g > 0).sum(1) == top_k + (p < 1) - (p == 0) * top_k).all()
    assert torch.allclose(s.sum(1), torch.ones(5, dtype=torch.float64))


def test_label_prior_negative_similarities_get_no_weight():
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [-1.0, -0.1]])
    g, s = label_prior(emb, top_k=1, p=0.2)
    assert g[0, 0] == pytest.approx(0.8) and (g[0, 1:] == 0).all() and s[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_k=4), "top_k"), (dict(top_k=0), "top_k"), (dict(top_k=9), "top_k"), (dict(top_k=1.5), "top_k"),
    (dict(top_k=1, p=-0.1), "p must"), (dict(top_k=1, p=1.0), "p must"), (dict(top_k=1, p=float("nan")), "p must"),
    (dict(top_k=1, temperature=0.0), "temperature"), (dict(top_k=1, temperature=-1.0), "temperature"),
    (dict(top_k=1, temperature=float("inf")), "temperature")])
def test_label_prior_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        label_prior(torch.randn(4, 3), **kwargs)


def test_label_prior_bad_embeddings():
    emb = torch.randn(4, 3)
    bad = emb.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="text_emb holds NaN.*rows \\[2\\]"):
        label_prior(bad, 1)
    zero = emb.clone()
    zero[1] = 0
    with pytest.raises(ValueError, match="text_emb has all-zero rows.*\\[1\\]"):
        label_prior(zero, 1)
    with pytest.raises(ValueError, match="text_emb must be \\[C, D\\]"):
        label_prior(torch.randn(4), 1)
    with pytest.raises(TypeError, match="text_emb must be a torch.Tensor"):
        label_prior([[1.0, 0.0], [0.0, 1.0]], 1)
    with pytest.raises(TypeError, match="floating-point"):
        label_prior(torch.ones(3, 2, dtype=torch.long), 1)


def splc_by_hand(logits, targets, tau, margin, gamma, correct):
    total = 0.0
    for row_l, row_t in zip(logits, targets):
        for z, t in zip(row_l, row_t):
            p = 1 / (1 + math.exp(-z))
            pm = 1 / (1 + math.exp(-(z - margin)))
            if t == 1 or (correct and p > tau):
                total += -((1 - pm) ** gamma) * math.log(pm)
            else:
                total += -(p ** gamma) * math.log(1 - p)
    return total / len(logits)


def test_splc_hand_computed():
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    targets = torch.tensor([[1, 0, 0]])
    # p(0.5) = 0.6225 > tau = 0.6: corrected to positive when correct=True
    pm = [1 / (1 + math.exp(-(z - 1.0))) for z in (2.0, -1.0, 0.5)]
    p = [1 / (1 + math.exp(-z)) for z in (2.0, -1.0, 0.5)]
    pos = lambda k: -((1 - pm[k]) ** 2) * math.log(pm[k])  # noqa: E731
    neg = lambda k: -(p[k] ** 2) * math.log(1 - p[k])  # noqa: E731
    assert splc_loss(logits, targets).item() == pytest.approx(pos(0) + neg(1) + pos(2), rel=1e-12)
    assert splc_loss(logits, targets, correct=False).item() == pytest.approx(pos(0) + neg(1) + neg(2), rel=1e-12)
    # a known negative is never corrected
    known = torch.tensor([[False, False, True]])
    assert splc_loss(logits, targets, known_negatives=known).item() == pytest.approx(pos(0) + neg(1) + neg(2))


@pytest.mark.parametrize("tau,margin,gamma,correct", [(0.6, 1.0, 2.0, True), (0.3, 0.0, 0.0, True),
                                                      (0.9, 2.0, 1.0, False)])
def test_splc_matches_loop_formula(tau, margin, gamma, correct):
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 2
    targets = (torch.rand(4, 6, generator=gen) < 0.3).long()
    want = splc_by_hand(logits.tolist(), targets.tolist(), tau, margin, gamma, correct)
    assert splc_loss(logits, targets, tau, margin, gamma, correct).item() == pytest.approx(want, rel=1e-10)


def test_splc_finite_for_large_logits_and_differentiable():
    logits = torch.tensor([[80.0, -80.0, 30.0]], requires_grad=True)
    loss = splc_loss(logits, torch.tensor([[0, 1, 0]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("fn", [splc_loss, assume_negative_bce])
def test_loss_bad_targets(fn):
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="targets must hold only values in"):
        fn(logits, torch.tensor([[0, 2, 1], [0, 0, 1]]))
    with pytest.raises(ValueError, match="targets must hold only values in"):
        fn(logits, torch.tensor([[0.5, 0, 1], [0, 0, 1]]))
    with pytest.raises(ValueError, match="targets must have the shape of logits"):
        fn(logits, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="logits must be \\[B, C\\]"):
        fn(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="targets must be a torch.Tensor"):
        fn(logits, [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(TypeError, match="logits must be a floating-point"):
        fn(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))


def test_splc_bad_hyperparameters():
    with pytest.raises(ValueError, match="tau"):
        splc_loss(torch.zeros(1, 2), torch.zeros(1, 2), tau=1.0)
    with pytest.raises(ValueError, match="margin"):
        splc_loss(torch.zeros(1, 2), torch.zeros(1, 2), margin=-1.0)
    with pytest.raises(ValueError, match="known_negatives"):
        splc_loss(torch.zeros(1, 2), torch.zeros(1, 2), known_negatives=torch.zeros(1, 3, dtype=torch.bool))


def test_partial_bce_ignores_unknown():
    logits = torch.tensor([[3.0, -2.0, 5.0]])
    full = partial_bce(logits, torch.tensor([[1, 0, -1]]))
    want = -math.log(1 / (1 + math.exp(-3.0))) - math.log(1 - 1 / (1 + math.exp(2.0)))
    assert full.item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="targets must hold only values in"):
        partial_bce(logits, torch.tensor([[1, 0, -2]]))


def test_flex_thresholds_follow_flexmatch():
    flex = FlexThresholds(num_images=4, num_classes=3, tau=0.8)
    assert torch.equal(flex.thresholds(), torch.zeros(3))  # warm-up: nothing learned yet
    flex.update(torch.tensor([0, 1, 2]), torch.tensor([[0.9, 0.1, 0.1], [0.9, 0.85, 0.1], [0.95, 0.1, 0.1]]))
    # sigma = (3, 1, 0); images never confident: 1 (image 3) -> beta = sigma / 3
    beta = torch.tensor([1.0, 1 / 3, 0.0])
    assert torch.allclose(flex.thresholds(), 0.8 * beta / (2 - beta))


def test_pessl_loss_hand_computed():
    strong = torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64)
    weak = torch.tensor([[0.9, 0.6, 0.1]], dtype=torch.float64)
    s_prior = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    thresholds = torch.tensor([0.5, 0.7, 0.05], dtype=torch.float64)
    # top-2 of weak = {0, 1}; above threshold: class 0 only (0.6 < 0.7; class 2 is not in the top 2)
    hard = -math.log(1 / (1 + math.exp(-1.0)))
    r = [0.75, 0.75, 0.1]
    soft = 0.0
    for z, t in zip([1.0, -1.0, 0.0], r):
        q = 1 / (1 + math.exp(-z))
        soft += -(t * math.log(q) + (1 - t) * math.log(1 - q))
    got = pessl_loss(strong, weak, s_prior, thresholds, top_k=2, prior_weight=0.5)
    assert got.item() == pytest.approx(hard + 0.5 * soft, rel=1e-10)


def test_pessl_bad_shapes():
    with pytest.raises(ValueError, match="weak_probs"):
        pessl_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.eye(3), torch.zeros(3))
    with pytest.raises(ValueError, match="s_prior"):
        pessl_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.eye(4), torch.zeros(3))
    with pytest.raises(ValueError, match="top_k"):
        pessl_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.eye(3), torch.zeros(3), top_k=4)
