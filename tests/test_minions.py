"""Minions engine (first version: batch 1, greedy): exactness, vote weights, adaptive length, errors."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from leanops.minions import Minions  # noqa: E402


def _gpt2(layers, width, seed, vocab=50):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=4, vocab_size=vocab, n_positions=128, bos_token_id=0,
                     eos_token_id=1)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # spread the logits so greedy decoding is not one repeated token
        model.lm_head.weight.mul_(20)
    return model


def _constant_drafter(token, vocab=50):
    """A plain-callable SSM that always proposes ``token``."""
    def logits(ids):
        out = torch.zeros(ids.shape[0], ids.shape[1], vocab)
        out[..., token] = 1.0
        return out
    return logits


@pytest.mark.parametrize("adaptive", [True, False])
def test_greedy_output_equals_llm_greedy(adaptive):
    llm = _gpt2(2, 64, 0)
    ssms = [_gpt2(1, 32, 1), _gpt2(1, 32, 2), llm]
    ids = torch.randint(2, 50, (1, 7), generator=torch.Generator().manual_seed(3))
    want = llm.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=0)
    engine = Minions(llm, ssms, adaptive=adaptive)
    got = engine.generate(ids, max_new_tokens=30)
    assert torch.equal(got, want)
    stats = engine.stats
    assert stats.new_tokens == 30 and stats.llm_passes == stats.rounds < 30  # fewer LLM passes than tokens
    assert len(stats.chosen_lengths) == stats.rounds


def test_callables_and_eos():
    llm = _gpt2(2, 64, 0)
    f = lambda x: llm(input_ids=x).logits  # noqa: E731
    ids = torch.randint(2, 50, (1, 5), generator=torch.Generator().manual_seed(4))
    want = llm.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(Minions(f, [f, _constant_drafter(3)]).generate(ids, max_new_tokens=12), want)
    eos = int(want[0, ids.shape[1] + 4])
    got = Minions(llm, [f]).generate(ids, max_new_tokens=12, eos_token_id=eos)
    first = (want[0, ids.shape[1]:] == eos).nonzero()[0, 0].item()
    assert torch.equal(got, want[:, : ids.shape[1] + first + 1])


def test_vote_weights_follow_acceptance():
    llm = _gpt2(2, 64, 0)
    engine = Minions(llm, [llm, _constant_drafter(3), _constant_drafter(4)], adaptive=False)
    engine.generate(torch.randint(5, 50, (1, 6), generator=torch.Generator().manual_seed(5)), max_new_tokens=24)
    w = engine.stats.weights
    assert w[0] > 1.0 > w[1] and w[0] > w[2]  # the drafter the LLM agrees with gains weight
    acc = engine.stats.acceptance()
    assert acc[0] > acc[1] and acc[0] > acc[2]
    assert all(0.1 <= x <= 10.0 for x in w)  # bounded


def test_adaptive_length_stays_in_bounds():
    llm = _gpt2(2, 64, 0)
    engine = Minions(llm, [_constant_drafter(3)], min_gamma=2, max_gamma=5, gamma=5)
    engine.generate(torch.randint(5, 50, (1, 6)), max_new_tokens=20)
    assert all(2 <= g <= 5 for g in engine.stats.chosen_lengths[:-1])  # the last round may be cut short


def test_bad_input_fails_before_any_work():
    llm = _gpt2(2, 64, 0)
    ids = torch.randint(2, 50, (1, 5))
    with pytest.raises(ValueError, match="ssms must hold"):
        Minions(llm, [])
    with pytest.raises(ValueError, match="must share a vocabulary"):
        Minions(llm, [_gpt2(1, 32, 1, vocab=60)])
    engine = Minions(llm, [llm])
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        engine.generate(ids, max_new_tokens=0)
    with pytest.raises(TypeError, match="integer token ids"):
        engine.generate(ids.float(), max_new_tokens=3)
    with pytest.raises(ValueError, match="exceeds the LLM's 128 positions"):
        engine.generate(torch.randint(2, 50, (1, 120)), max_new_tokens=10)
    with pytest.raises(ValueError, match="temperature must be"):
        engine.generate(ids, max_new_tokens=3, temperature=0.0)
    with pytest.raises(ValueError, match="top_p must be"):
        engine.generate(ids, max_new_tokens=3, top_p=1.5)
    with pytest.raises(NotImplementedError, match="batch size > 1"):
        engine.generate(torch.randint(2, 50, (2, 5)), max_new_tokens=3)


@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_sampling_is_lossless(top_p):
    """Chi-square: the first sampled token follows the LLM's own (temperature, top-p) distribution."""
    from leanops.minions.engine import _nucleus

    llm = _gpt2(1, 32, 0, vocab=8)
    with torch.no_grad():
        llm.lm_head.weight.mul_(0.05)  # a spread-out target distribution
    drafter = _gpt2(1, 32, 9, vocab=8)
    ids = torch.tensor([[2, 5, 3]])
    p = torch.softmax(_nucleus(llm(input_ids=ids).logits[0, -1].float() / 0.8, top_p), -1).double()
    engine = Minions(llm, [drafter], gamma=3)
    g = torch.Generator().manual_seed(0)
    n = 1500
    counts = torch.zeros(8, dtype=torch.float64)
    for _ in range(n):
        out = engine.generate(ids, max_new_tokens=2, do_sample=True, temperature=0.8, top_p=top_p, generator=g)
        counts[int(out[0, 3])] += 1
    keep = p > 0
    assert counts[~keep].sum() == 0  # never a token outside the nucleus
    expected = p[keep] * n
    chi2 = float(((counts[keep] - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001
