"""leanops.pdg copy mechanism: the formula on hand-made values, log space, the loss, bad input."""
import math

import pytest
import torch

from leanops.pdg import copy_distribution, copy_log_distribution, copy_nll


def hand_made():
    # V = 3, S = 3, n_ext = 2: source = [vocab 1, ext 3 (= V+0), vocab 1]; one step
    p_vocab = torch.tensor([[[0.5, 0.3, 0.2]]])
    attn = torch.tensor([[[0.1, 0.6, 0.3]]])
    src = torch.tensor([[1, 3, 1]])
    p_gen = torch.tensor([[[0.25]]])
    # by hand: id0 .25*.5, id1 .25*.3 + .75*(.1+.3), id2 .25*.2, id3 .75*.6, id4 0
    expected = torch.tensor([[[0.125, 0.075 + 0.3, 0.05, 0.45, 0.0]]])
    return p_vocab, attn, src, p_gen, expected


def test_formula_on_hand_made_values():
    p_vocab, attn, src, p_gen, expected = hand_made()
    out = copy_distribution(p_vocab, attn, src, p_gen, n_ext=2)
    assert out.shape == (1, 1, 5)
    torch.testing.assert_close(out, expected)
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-6)


def test_random_rows_sum_to_one_and_match_loop():
    g = torch.Generator().manual_seed(0)
    b, t, v, s, n_ext = 3, 4, 7, 5, 3
    p_vocab = torch.rand(b, t, v, generator=g).softmax(-1).double()
    attn = torch.rand(b, t, s, generator=g).softmax(-1).double()
    src = torch.randint(0, v + n_ext, (b, s), generator=g)
    p_gen = torch.rand(b, t, 1, generator=g).double()
    out = copy_distribution(p_vocab, attn, src, p_gen, n_ext)
    loop = torch.zeros(b, t, v + n_ext, dtype=torch.double)
    for i in range(b):
        for j in range(t):
            loop[i, j, :v] = p_gen[i, j, 0] * p_vocab[i, j]
            for k in range(s):
                loop[i, j, src[i, k]] += (1 - p_gen[i, j, 0]) * attn[i, j, k]
    torch.testing.assert_close(out, loop)
    torch.testing.assert_close(out.sum(-1), torch.ones(b, t, dtype=torch.double))


def test_log_distribution_equals_log_of_formula_and_stays_finite():
    p_vocab, attn, src, p_gen, expected = hand_made()
    logit = torch.logit(p_gen)
    log = copy_log_distribution(p_vocab.log(), attn, src, torch.nn.functional.logsigmoid(logit), 2,
                                torch.nn.functional.logsigmoid(-logit))
    torch.testing.assert_close(log.exp(), expected)
    assert log[0, 0, 4] == float("-inf")  # an extended id absent from the source has probability 0
    # p_gen -> 1 with a tiny vocabulary probability: log space keeps what probability space rounds to 0
    tiny = torch.tensor([[[-200.0, 0.0, -300.0]]]).log_softmax(-1)
    big = torch.tensor([[[40.0]]])
    log = copy_log_distribution(tiny, attn, src, torch.nn.functional.logsigmoid(big), 2,
                                torch.nn.functional.logsigmoid(-big))
    assert torch.isfinite(log[0, 0, :4]).all()
    assert float(log[0, 0, 0]) == pytest.approx(-200.0, abs=1e-3)
    assert copy_distribution(tiny.exp(), attn, src, torch.sigmoid(big), 2)[0, 0, 0] == 0  # underflows


def test_nll_matches_formula_and_has_finite_gradients():
    p_vocab, attn, src, p_gen, expected = hand_made()
    logits = p_vocab.log().clone().requires_grad_()
    attn_logits = attn.log().clone().requires_grad_()
    gate = torch.logit(p_gen).clone().requires_grad_()
    lp = torch.nn.functional.logsigmoid
    targets = torch.tensor([[0]]), torch.tensor([[1]]), torch.tensor([[3]])
    for y in targets:
        nll = copy_nll(logits.log_softmax(-1), attn_logits.softmax(-1), src, lp(gate), lp(-gate), y)
        assert float(nll.detach()) == pytest.approx(-math.log(float(expected[0, 0, int(y)])), rel=1e-5)
        nll.sum().backward()
        for p in (logits, attn_logits, gate):
            assert torch.isfinite(p.grad).all()
            p.grad = None


def test_nll_with_vocabulary_word_absent_from_source_ignores_copy_term():
    p_vocab, attn, src, p_gen, _ = hand_made()
    y = torch.tensor([[2]])  # in vocabulary, not in the source
    nll = copy_nll(p_vocab.log(), attn, src, p_gen.log(), (1 - p_gen).log(), y)
    assert float(nll) == pytest.approx(-math.log(0.25 * 0.2), rel=1e-6)


@pytest.mark.parametrize("bad,match", [
    (dict(src=torch.tensor([[1, 5, 1]])), "src_ext_ids must lie in"),
    (dict(src=torch.tensor([[1, -1, 1]])), "src_ext_ids must lie in"),
    (dict(p_gen=torch.tensor([[[1.5]]])), "p_gen must lie in"),
    (dict(p_gen=torch.tensor([[[-0.1]]])), "p_gen must lie in"),
    (dict(p_gen=torch.tensor([[[float("nan")]]])), "p_gen must lie in"),
    (dict(p_gen=torch.tensor([[0.5]])), "p_gen must be"),
    (dict(attn=torch.ones(2, 1, 3)), "attn must be"),
    (dict(src=torch.tensor([[1, 3]])), "src_ext_ids must be"),
    (dict(n_ext=-1), "n_ext"),
])
def test_bad_input_is_named(bad, match):
    p_vocab, attn, src, p_gen, _ = hand_made()
    args = dict(p_vocab=p_vocab, attn=attn, src=src, p_gen=p_gen, n_ext=2)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        copy_distribution(args["p_vocab"], args["attn"], args["src"], args["p_gen"], args["n_ext"])


def test_float_ids_are_a_type_error():
    p_vocab, attn, src, p_gen, _ = hand_made()
    with pytest.raises(TypeError, match="src_ext_ids"):
        copy_distribution(p_vocab, attn, src.float(), p_gen, 2)
