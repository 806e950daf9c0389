"""Minions engine: greedy exactness (batch 1 and ragged batches, with and without the pipeline), lossless
sampling (chi-square), vote weights, adaptive length, per-row EOS, cache masking/compaction, bad input."""
import time

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from leanops.minions import Minions  # noqa: E402
from leanops.minions.live_slots import ragged_block  # noqa: E402
from leanops.minions.runner import HFRunner  # noqa: E402

transformers.logging.set_verbosity_error()
VOCAB = 50


def _gpt2(layers, width, seed, vocab=VOCAB, positions=256):
    """A tiny random GPT-2 whose greedy output varies with context (untied, spread-out head)."""
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=4, vocab_size=vocab, n_positions=positions,
                     tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.16)
    return model


LLM = _gpt2(2, 64, 0)


def _noisy(model, seed, flip=0.3):
    """A plain-callable SSM: the model's logits, with the top choice moved at ~``flip`` of positions."""
    def logits(ids):
        out = model(input_ids=ids).logits.clone()
        wrong = torch.rand(ids.shape[1], generator=torch.Generator().manual_seed(seed * 1000 + ids.shape[1])) < flip
        out[0, wrong] = out[0, wrong].roll(1, dims=-1)
        return out
    return logits


def _constant_drafter(token, vocab=VOCAB):
    def logits(ids):
        out = torch.zeros(ids.shape[0], ids.shape[1], vocab)
        out[..., token] = 1.0
        return out
    return logits


def _left_padded(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    ids = torch.zeros(len(lengths), t, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, t - n:] = torch.randint(2, VOCAB, (n,), generator=g)
        mask[b, t - n:] = 1
    return ids, mask


def _llm_greedy(ids, mask, new, **kw):
    """The LLM's own greedy continuation of each row, decoded alone (no padding involved)."""
    rows = []
    for b in range(ids.shape[0]):
        prompt = ids[b][mask[b].bool()][None]
        rows.append(LLM.generate(prompt, max_new_tokens=new, do_sample=False, pad_token_id=0, **kw)[0, prompt.shape[1]:])
    return rows


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("adaptive", [True, False])
@pytest.mark.parametrize("lengths", [[7], [7, 3, 11]])
def test_greedy_output_equals_llm_greedy(lengths, adaptive, pipeline):
    ids, mask = _left_padded(lengths, seed=len(lengths))
    ssms = [_noisy(LLM, 1), _noisy(LLM, 2, flip=0.15), _gpt2(1, 32, 5)]
    # every round all three draft and vote (the callables cost an LLM pass per token, so the controller would
    # rightly draft with the cheap random one alone): this test is about the vote's output, selection has its own
    engine = Minions(LLM, ssms, adaptive=adaptive, pipeline=pipeline, min_gamma=1,  # True: overlap every round
                     select_drafters=False)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=30)
    assert torch.equal(got[:, : ids.shape[1]], ids)  # the prompt comes back as given
    for b, want in enumerate(_llm_greedy(ids, mask, 30)):
        assert torch.equal(got[b, ids.shape[1]:], want), f"row {b}"
    stats = engine.stats
    assert stats.new_tokens == 30 * len(lengths)
    assert stats.llm_passes == stats.rounds < 30  # fewer LLM passes than tokens
    assert len(stats.chosen_lengths) == stats.rounds
    assert 0 <= min(stats.acceptance()) and max(stats.acceptance()) <= 1
    assert stats.draft_seconds > 0 and stats.verify_seconds > 0
    if pipeline:
        # pipeline=True overlaps every round (drafts made during verification that come true are used:
        # test_pipelined_drafts_are_used_across_a_batch, with a drafter that is always right)
        assert stats.overlapped_rounds == stats.rounds


def test_rows_accept_different_lengths():
    """One drafter right and one wrong per row: rows keep different counts each round, yet stay exact."""
    ids, mask = _left_padded([5, 8, 6, 4], seed=9)
    engine = Minions(LLM, [_noisy(LLM, 3, flip=0.5)], adaptive=False, gamma=4)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=40)
    for b, want in enumerate(_llm_greedy(ids, mask, 40)):
        assert torch.equal(got[b, ids.shape[1]:], want)
    assert 0.1 < engine.stats.acceptance()[0] < 0.9


def test_long_run_compacts_cache_and_stays_exact():
    ids, mask = _left_padded([6, 12, 3], seed=4)
    engine = Minions(LLM, [_noisy(LLM, 5, flip=0.6), _constant_drafter(7)], adaptive=False, gamma=6)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=120)
    for b, want in enumerate(_llm_greedy(ids, mask, 120)):
        assert torch.equal(got[b, ids.shape[1]:], want)


def test_runner_compaction_keeps_logits():
    runner = HFRunner(LLM, 2, "cpu")
    seqs = [torch.randint(2, VOCAB, (90,)), torch.randint(2, VOCAB, (70,))]
    tokens, valid = ragged_block(seqs)
    runner.feed(tokens, valid)
    runner.feed(torch.randint(2, VOCAB, (2, 100)), torch.ones(2, 100, dtype=torch.bool))  # to be dropped
    runner.live[:, -1] = True  # keep one trailing slot so cropping alone cannot shrink the cache
    runner.keep(torch.tensor([90, 70]))
    assert runner.live.shape[1] == 90  # compacted: more than half the slots were dead
    nxt = torch.tensor([[3], [4]])
    got = runner.feed(nxt, torch.ones(2, 1, dtype=torch.bool))[:, 0]
    for b, s in enumerate(seqs):
        want = LLM(input_ids=torch.cat([s, nxt[b]])[None]).logits[0, -1]
        torch.testing.assert_close(got[b], want, atol=1e-4, rtol=1e-4)


def test_hf_runner_passes_the_cache_under_the_name_the_model_takes(monkeypatch):
    import warnings

    from transformers.utils import generic

    logged = []  # transformers reports the deprecated name through its logger, once per process
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: logged.append(msg))
    runner = HFRunner(LLM, 1, "cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = runner.feed(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool))
        second = runner.feed(torch.tensor([[4]]), torch.ones(1, 1, dtype=torch.bool))
    said = [str(w.message) for w in caught] + [str(m) for m in logged]
    assert not [m for m in said if "past_key_values" in m]  # no deprecated name, passed or read
    assert runner.cache is not None and runner.count.tolist() == [4]
    whole = LLM(input_ids=torch.tensor([[1, 2, 3, 4]])).logits
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)


def test_callables_and_eos_per_row():
    f = lambda x: LLM(input_ids=x).logits  # noqa: E731
    ids, mask = _left_padded([5, 9], seed=6)
    want = _llm_greedy(ids, mask, 16)
    eos = int(want[0][4])  # row 0 stops at its 5th token; row 1 may stop elsewhere or not at all
    got = Minions(LLM, [f, _constant_drafter(3)]).generate(ids, attention_mask=mask, max_new_tokens=16,
                                                           eos_token_id=eos, pad_token_id=0)
    for b, row in enumerate(want):
        hits = (row == eos).nonzero()
        stop = int(hits[0]) + 1 if hits.numel() else 16
        assert torch.equal(got[b, ids.shape[1]: ids.shape[1] + stop], row[:stop])
        assert bool((got[b, ids.shape[1] + stop:] == 0).all())  # padded after EOS
    assert got.shape[1] == ids.shape[1] + max(
        (int((r == eos).nonzero()[0]) + 1 if (r == eos).any() else 16) for r in want)


def test_vote_weights_follow_acceptance():
    engine = Minions(LLM, [_noisy(LLM, 1, flip=0.05), _constant_drafter(3), _constant_drafter(4)], adaptive=False)
    engine.generate(_left_padded([6], seed=5)[0], max_new_tokens=24)
    w = engine.stats.weights
    assert w[0] == 1.0 > w[1] and w[0] > w[2]  # the drafter the LLM agrees with has the most weight
    acc = engine.stats.acceptance()
    assert acc[0] > acc[1] and acc[0] > acc[2]
    assert all(0.2 <= x <= 1.0 for x in w)  # tempered and floored: no weight collapses to zero


def test_adaptive_length_stays_in_bounds_and_moves():
    prompt = _left_padded([6], seed=1)[0]
    future = LLM.generate(prompt, max_new_tokens=60, do_sample=False, pad_token_id=0)[0]

    def oracle(ids):  # a free drafter that knows the LLM's greedy continuation
        out = torch.zeros(1, ids.shape[1], VOCAB)
        out[0, torch.arange(ids.shape[1]), future[1: ids.shape[1] + 1]] = 1.0
        return out
    good = Minions(LLM, [oracle], min_gamma=2, max_gamma=7, gamma=2)
    good.generate(prompt, max_new_tokens=40)
    bad = Minions(LLM, [_constant_drafter(3)], min_gamma=2, max_gamma=7, gamma=7)
    bad.generate(_left_padded([6], seed=1)[0], max_new_tokens=20)
    for engine in (good, bad):
        assert all(g <= 7 for g in engine.stats.chosen_lengths)
        assert all(g >= 2 for g in engine.stats.chosen_lengths[:-1])  # the last round may be cut short
    assert max(good.stats.chosen_lengths) > 2  # a perfect drafter earns longer drafts
    assert min(bad.stats.chosen_lengths[:-1]) < 7  # a useless one shorter ones


def test_bad_input_fails_before_any_work():
    ids = torch.randint(2, VOCAB, (1, 5))
    with pytest.raises(ValueError, match="ssms must be a non-empty list"):
        Minions(LLM, [])
    with pytest.raises(ValueError, match="must share a vocabulary"):
        Minions(LLM, [_gpt2(1, 32, 1, vocab=60)])
    with pytest.raises(ValueError, match="min_gamma <= gamma"):
        Minions(LLM, [LLM], gamma=-1)
    with pytest.raises(ValueError, match="max_gamma >= 1"):
        Minions(LLM, [LLM], min_gamma=0, gamma=0, max_gamma=0)
    engine = Minions(LLM, [LLM])
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        engine.generate(ids, max_new_tokens=0)
    with pytest.raises(TypeError, match="integer token ids"):
        engine.generate(ids.float(), max_new_tokens=3)
    with pytest.raises(ValueError, match="exceeds the LLM's 256 positions"):
        engine.generate(torch.randint(2, VOCAB, (1, 250)), max_new_tokens=10)
    with pytest.raises(ValueError, match="exceeds ssms\\[0\\]'s 64 positions"):
        Minions(LLM, [_gpt2(1, 32, 1, positions=64)]).generate(torch.randint(2, VOCAB, (1, 60)), max_new_tokens=4)
    with pytest.raises(ValueError, match="temperature must be"):
        engine.generate(ids, max_new_tokens=3, temperature=0.0)
    with pytest.raises(ValueError, match="top_p must be"):
        engine.generate(ids, max_new_tokens=3, top_p=1.5)
    with pytest.raises(ValueError, match="input_ids must lie in"):
        engine.generate(torch.tensor([[3, VOCAB]]), max_new_tokens=3)
    with pytest.raises(ValueError, match="attention_mask must be a tensor shaped like"):
        engine.generate(ids, attention_mask=torch.ones(1, 4), max_new_tokens=3)
    with pytest.raises(ValueError, match="at least one token in every row"):
        engine.generate(ids, attention_mask=torch.zeros(1, 5), max_new_tokens=3)
    with pytest.raises(ValueError, match="input_ids must be \\[B >= 1"):
        engine.generate(torch.zeros(0, 5, dtype=torch.long), max_new_tokens=3)


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_sampling_is_lossless(top_p, pipeline):
    """Chi-square over many rows of one batch: the first two sampled tokens follow the LLM's own
    (temperature, top-p) distribution, whichever drafter proposed them."""
    from leanops.minions.sampling import nucleus as _nucleus

    llm = _gpt2(1, 32, 0, vocab=8)
    with torch.no_grad():
        llm.lm_head.weight.mul_(0.3)  # a spread-out target distribution
    drafter = _gpt2(1, 32, 9, vocab=8)
    prompt = torch.tensor([[2, 5, 3]])
    n = 3000
    engine = Minions(llm, [drafter, llm], gamma=3, pipeline=pipeline)
    out = engine.generate(prompt.expand(n, -1), max_new_tokens=3, do_sample=True, temperature=0.8, top_p=top_p,
                          generator=torch.Generator().manual_seed(0))
    assert engine.stats.rounds >= 1 and sum(engine.stats.drafted_per_ssm) > 0
    with torch.no_grad():
        p1 = torch.softmax(_nucleus(llm(input_ids=prompt).logits[0, -1].float() / 0.8, top_p), -1).double()
    first = out[:, 3]
    _assert_chi2(first, p1, n)
    # the second token given the most common first token
    top = int(torch.mode(first).values)
    rows = first == top
    with torch.no_grad():
        p2 = torch.softmax(_nucleus(llm(input_ids=torch.tensor([[2, 5, 3, top]])).logits[0, -1].float() / 0.8,
                                    top_p), -1).double()
    _assert_chi2(out[rows, 4], p2, int(rows.sum()))


def test_plain_steps_sample_from_the_llm():
    """gamma 0 (a plain LLM step, nothing drafted) still samples the LLM's own distribution."""
    from leanops.minions.sampling import nucleus as _nucleus

    llm = _gpt2(1, 32, 0, vocab=8)
    with torch.no_grad():
        llm.lm_head.weight.mul_(0.3)
    prompt = torch.tensor([[2, 5, 3]])
    n = 3000
    engine = Minions(llm, [_gpt2(1, 32, 9, vocab=8)], min_gamma=0, gamma=0, adaptive=False)
    out = engine.generate(prompt.expand(n, -1), max_new_tokens=2, do_sample=True, temperature=0.8, top_p=0.7,
                          generator=torch.Generator().manual_seed(1))
    assert engine.stats.chosen_lengths == [0, 0] and sum(engine.stats.drafted_per_ssm) == 0
    with torch.no_grad():
        p1 = torch.softmax(_nucleus(llm(input_ids=prompt).logits[0, -1].float() / 0.8, 0.7), -1).double()
    _assert_chi2(out[:, 3], p1, n)


def test_an_ssm_that_sat_out_is_scored_on_the_rounds_it_missed(monkeypatch):
    """When a benched SSM drafts again, its catch-up feed scores it (teacher-forced, its argmax against each
    kept token) on every round it sat out: a right drafter gets agreements only, a wrong one misses."""
    from leanops.minions.policy import VoteWeights

    calls = []
    record = VoteWeights.record_agreement
    monkeypatch.setattr(VoteWeights, "record_agreement",
                        lambda self, i, a, d: calls.append((i, a, d)) or record(self, i, a, d))
    ids, mask = _left_padded([6], seed=4)
    engine = Minions(LLM, [_noisy(LLM, 1, flip=0.0), _constant_drafter(3)], recheck_every=4, min_gamma=1)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=40)
    assert torch.equal(got[0, ids.shape[1]:], _llm_greedy(ids, mask, 40)[0])
    wrong = [(a, d) for i, a, d in calls if i == 1]
    right = [(a, d) for i, a, d in calls if i == 0]
    assert wrong and sum(d for _, d in wrong) >= 5 and sum(a for a, _ in wrong) <= sum(d for _, d in wrong) / 2
    assert all(d == 0 for _, d in right)


def test_ssms_sitting_out_are_fed_and_scored_every_score_every_rounds(monkeypatch):
    """Greedy: every ``score_every`` rounds each SSM that did not draft is fed what it missed and scored on it
    (a wrong one keeps missing, so its estimate stays low while it sits out); ``score_every=0`` never does."""
    from leanops.minions.policy import VoteWeights

    ids, mask = _left_padded([6, 5], seed=7)
    want = _llm_greedy(ids, mask, 40)
    from leanops.minions.engine import _Run

    record, score_benched = VoteWeights.record_agreement, _Run.score_benched  # the originals, taken once
    for every, expect_calls in ((2, True), (0, False)):
        calls, benched = [], []
        monkeypatch.setattr(VoteWeights, "record_agreement",
                            lambda self, i, a, d: calls.append((i, a, d)) or record(self, i, a, d))
        monkeypatch.setattr(_Run, "score_benched", lambda self, i: benched.append(i) or score_benched(self, i))
        engine = Minions(LLM, [_noisy(LLM, 1, flip=0.0), _constant_drafter(3)], recheck_every=64, min_gamma=1,
                         score_every=every)
        got = engine.generate(ids, attention_mask=mask, max_new_tokens=40)
        for b in range(2):
            assert torch.equal(got[b, ids.shape[1]:], want[b])
        calls = [c for c in calls if c[1] + c[2]]  # a catch-up with no scorable token records nothing
        # score_every=0: never scored while sitting out (an SSM that drafts again is still scored on its catch-up)
        assert (len(benched) >= 3) == expect_calls and (expect_calls or not benched)
        assert (len(calls) >= 3) or not expect_calls
        for i, a, d in calls:  # whichever of the two sat out was scored as what it is
            assert (d == 0 < a) if i == 0 else (d > 3 * a)
    with pytest.raises(ValueError, match="score_every"):
        Minions(LLM, [LLM], score_every=-1)


def test_speculation_that_does_not_pay_falls_back_to_plain_steps():
    """A slow drafter that is never right: the cost model picks gamma 0 (plain LLM steps), speculates again
    every ``recheck_every`` rounds to keep its estimates current, and the output stays the LLM's greedy output."""
    ids, mask = _left_padded([6, 4], seed=21)
    wrong = _constant_drafter(3)

    def slow_wrong(x):
        time.sleep(0.005)  # drafting a token costs more than an LLM pass of this tiny model
        return wrong(x)
    engine = Minions(LLM, [slow_wrong], min_gamma=0, gamma=4, recheck_every=8)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=60)
    for b, want in enumerate(_llm_greedy(ids, mask, 60)):
        assert torch.equal(got[b, ids.shape[1]:], want)
    lengths = engine.stats.chosen_lengths
    assert lengths.count(0) > len(lengths) / 2
    assert any(g > 0 for g in lengths[len(lengths) // 2:])  # rechecks keep coming


def _assert_chi2(tokens, p, n):
    counts = torch.bincount(tokens, minlength=p.shape[0]).double()
    keep = p > 0
    assert counts[~keep].sum() == 0  # never a token outside the nucleus
    expected = p[keep] * n
    chi2 = float(((counts[keep] - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, <= 7 degrees of freedom, p = 0.001


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("capacity", [256, 16])  # 16: the cache must compact and grow mid-run
def test_lean_gpt2_runner_matches_hf(capacity, packed, monkeypatch):
    """The lean runner gives the HF model's logits through ragged feeds, holes and compaction, with the
    model's own weights and with oneDNN-prepacked ones (packed even though they are small, for the test)."""
    from leanops.minions import lean_gpt2
    from leanops.minions.lean_gpt2 import LeanGPT2Runner, supports

    monkeypatch.setattr(lean_gpt2, "PACK_MIN_ELEMENTS", 0)
    model = _gpt2(2, 64, 11)
    assert supports(model) and not supports(lambda x: x)
    lean, hf = LeanGPT2Runner(model, 3, "cpu", capacity=capacity, packed=packed), HFRunner(model, 3, "cpu")
    assert all(lin.packed is not None for lin in lean.blocks[0][2:4]) == (packed and lean_gpt2.can_pack("cpu", torch.float32))
    g = torch.Generator().manual_seed(0)
    for step in range(12):
        n = torch.randint(0, 4, (3,), generator=g)
        n[step % 3] = max(int(n[step % 3]), 1)
        tokens, valid = ragged_block([torch.randint(0, VOCAB, (int(k),), generator=g) for k in n])
        a, b = lean.feed(tokens, valid), hf.feed(tokens, valid)
        torch.testing.assert_close(a[valid], b[valid], atol=1e-4, rtol=1e-4)
        drop = torch.randint(0, 3, (3,), generator=g)
        keep = (lean.count - drop).clamp_min(1)
        lean.keep(keep)
        hf.keep(keep)
        assert torch.equal(lean.count, hf.count)


def test_lean_runner_computes_only_the_rows_still_running():
    """Rows with no token in a feed (finished rows) are skipped when few rows run: the running rows' logits
    and every row's later passes equal HF's, and the skipped rows get dead slots, not garbage keys."""
    from leanops.minions.lean_gpt2 import LeanGPT2Runner

    model = _gpt2(2, 64, 12)
    lean, hf = LeanGPT2Runner(model, 4, "cpu"), HFRunner(model, 4, "cpu")
    subset_passes = []
    feed_rows = lean._feed_rows
    lean._feed_rows = lambda *a: subset_passes.append(1) or feed_rows(*a)
    g = torch.Generator().manual_seed(3)
    for n in ([5, 3, 4, 2], [0, 0, 3, 0], [0, 2, 1, 0], [1, 1, 1, 1]):  # 1 and 2 of 4 rows run in between
        tokens, valid = ragged_block([torch.randint(0, VOCAB, (k,), generator=g) for k in n])
        a, b = lean.feed(tokens, valid), hf.feed(tokens, valid)
        torch.testing.assert_close(a[valid], b[valid], atol=1e-4, rtol=1e-4)
        assert torch.equal(lean.count, hf.count)
    assert lean.live.shape == hf.live.shape and torch.equal(lean.live, hf.live)
    assert len(subset_passes) == 2  # the two feeds where 1 and 2 of 4 rows ran


def test_packed_weights_are_reused_until_the_weights_change(monkeypatch):
    from leanops.minions import lean_gpt2

    monkeypatch.setattr(lean_gpt2, "PACK_MIN_ELEMENTS", 0)
    if not lean_gpt2.can_pack("cpu", torch.float32):
        pytest.skip("no oneDNN in this torch build")
    model = _gpt2(1, 32, 17)
    a, b = (lean_gpt2.LeanGPT2Runner(model, 1, "cpu", packed=True) for _ in range(2))
    assert a.head is b.head  # packed once, shared
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    c = lean_gpt2.LeanGPT2Runner(model, 1, "cpu", packed=True)
    assert c.head is not a.head  # repacked after the in-place change
    ids = torch.tensor([[1, 2, 3]])
    want = model(input_ids=ids).logits
    torch.testing.assert_close(c.feed(ids, torch.ones_like(ids, dtype=torch.bool)), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("packed", [False, True])
def test_lean_greedy_equals_hf_greedy(packed, monkeypatch):
    from leanops.minions import lean_gpt2

    monkeypatch.setattr(lean_gpt2, "PACK_MIN_ELEMENTS", 0)
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(4))
    want = LLM.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30, do_sample=False, pad_token_id=0)
    assert torch.equal(lean_gpt2.greedy(LLM, ids, 30, packed=packed), want)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lean_gpt2.greedy(LLM, ids, 0)
    with pytest.raises(ValueError, match="input_ids must be"):
        lean_gpt2.greedy(LLM, ids[0], 4)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        lean_gpt2.greedy(lambda x: x, ids, 4)


def test_auto_pipeline_lets_the_worker_thread_go_when_not_overlapping():
    import threading

    engine = Minions(LLM, [_noisy(LLM, 1, flip=0.1)], pipeline="auto")
    before = threading.active_count()
    assert engine._worker() is engine._worker()  # one thread, kept while overlapping
    engine._drop_worker()
    assert engine._pool is None
    time.sleep(0.05)
    assert threading.active_count() <= before


def test_lean_drafters_change_nothing_but_speed():
    ids, mask = _left_padded([7, 3], seed=8)
    drafters = [_gpt2(1, 32, 5), _gpt2(2, 48, 6), _noisy(LLM, 1)]
    a = Minions(LLM, drafters, adaptive=False, lean_drafters=True).generate(ids, attention_mask=mask, max_new_tokens=24)
    b = Minions(LLM, drafters, adaptive=False, lean_drafters=False).generate(ids, attention_mask=mask, max_new_tokens=24)
    assert torch.equal(a, b)


def test_auto_pipeline_tries_both_ways_and_stays_exact():
    ids, mask = _left_padded([6, 9], seed=12)
    engine = Minions(LLM, [_noisy(LLM, 1, flip=0.1), _gpt2(1, 32, 5)], pipeline="auto")
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=60)
    for b, want in enumerate(_llm_greedy(ids, mask, 60)):
        assert torch.equal(got[b, ids.shape[1]:], want)
    assert 0 < engine.stats.overlapped_rounds < engine.stats.rounds  # measured both ways
    assert all(n >= 1 for _, _, n in engine.overlap.cost.values())
    with pytest.raises(ValueError, match="pipeline must be"):
        Minions(LLM, [LLM], pipeline="sometimes")


def test_a_weaker_drafter_of_the_same_cost_drafts_only_in_recheck_rounds():
    # two drafters that cost the same (the LLM with its top choice moved at 5% and at 90% of positions): the
    # controller drafts with the better one alone; every recheck_every rounds all of them draft and vote
    engine = Minions(LLM, [_noisy(LLM, 1, flip=0.05), _noisy(LLM, 2, flip=0.9)], adaptive=False, recheck_every=8)
    engine.generate(_left_padded([6], seed=5)[0], max_new_tokens=48)
    drafted = engine.stats.drafted_per_ssm
    assert 0 < drafted[1] < drafted[0] / 2


@pytest.mark.parametrize("lengths", [[7], [7, 3, 11]])
def test_lean_llm_runner_keeps_greedy_exact(lengths):
    ids, mask = _left_padded(lengths, seed=13)
    engine = Minions(LLM, [_noisy(LLM, 2, flip=0.2), _gpt2(1, 32, 5)], lean_llm=True)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=40)
    for b, want in enumerate(_llm_greedy(ids, mask, 40)):
        assert torch.equal(got[b, ids.shape[1]:], want)


def test_pipelined_drafts_are_used_across_a_batch():
    """A drafter that is the LLM itself: every row comes true each round, so every round after the first
    starts from drafts made while the LLM verified, and the output is still exact."""
    ids, mask = _left_padded([5, 8], seed=14)
    engine = Minions(LLM, [lambda x: LLM(input_ids=x).logits], pipeline=True, adaptive=False)
    got = engine.generate(ids, attention_mask=mask, max_new_tokens=25)
    for b, want in enumerate(_llm_greedy(ids, mask, 25)):
        assert torch.equal(got[b, ids.shape[1]:], want)
    assert engine.stats.pipelined_drafts >= engine.stats.rounds - 2


def test_every_pass_runs_in_inference_mode():
    """Grad mode is per thread: the drafting thread's passes, the calling thread's and the lean runner's all
    run under inference mode (no autograd bookkeeping), and the returned ids are an ordinary tensor."""
    import threading

    from leanops.minions.lean_gpt2 import LeanGPT2Runner

    seen = []

    def spy(ids):
        seen.append((threading.current_thread().name, torch.is_inference_mode_enabled()))
        return LLM(input_ids=ids).logits
    ids, mask = _left_padded([5, 8], seed=15)
    out = Minions(LLM, [spy], pipeline=True, adaptive=False).generate(ids, attention_mask=mask, max_new_tokens=12)
    assert any(name.startswith("minions-draft") for name, _ in seen)  # some passes ran on the drafting thread
    assert all(inference for _, inference in seen)
    assert not out.is_inference()
    out[:, -1] = 0  # the caller may edit it in place, as HF's generate output
    lean = LeanGPT2Runner(LLM, 1, "cpu")
    logits = lean.feed(torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool))  # called with grad enabled
    assert torch.is_grad_enabled() and logits.is_inference() and not logits.requires_grad


def test_a_generate_call_does_not_depend_on_earlier_calls_unless_asked():
    """Each call starts from fresh measurements (reset_state); carry_state=True keeps them across calls.
    Fixed length and drafter set, so the decisions are the vote weights' alone (no timing in them)."""
    ids_a, mask_a = _left_padded([7], seed=31)
    ids_b, mask_b = _left_padded([5], seed=32)
    ssms = [_noisy(LLM, 1), _noisy(LLM, 2, flip=0.6)]

    def engine(**kw):
        return Minions(LLM, ssms, adaptive=False, select_drafters=False, **kw)
    fresh = engine()
    fresh.generate(ids_b, attention_mask=mask_b, max_new_tokens=20)
    used = engine()
    used.generate(ids_a, attention_mask=mask_a, max_new_tokens=20)
    used.generate(ids_b, attention_mask=mask_b, max_new_tokens=20)
    assert used.stats.weights == fresh.stats.weights and used.rounds_total == fresh.rounds_total
    carried = engine(carry_state=True)
    carried.generate(ids_a, attention_mask=mask_a, max_new_tokens=20)
    carried.generate(ids_b, attention_mask=mask_b, max_new_tokens=20)
    assert carried.stats.weights != fresh.stats.weights and carried.rounds_total > fresh.rounds_total
    carried.reset_state()
    assert carried.rounds_total == 0 and carried.weights.tolist() == [1.0, 1.0]
