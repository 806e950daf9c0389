"""Data, calibration, group-wise dual sampling, the DataLoader pipeline, the Trainer (GPT-2 and BART,
tiny random configs) and the experiment on a tiny configuration. A bag-of-words embedder stands in
for MiniLM here (speed); tests/test_contrastive_minilm.py runs the real one."""
import json

import numpy as np
import pytest
import torch

from leanops.contrastive import (GroupDataset, HashedBagOfWords, Trainer, TextEmbeddings, calibrate, encode_pairs,
                                 frozen_copy, group_loader, load_pairs, sample_groups, sequence_logprob, split_by_conversation,
                                 train_tokenizer)
from leanops.contrastive.sampling import SIDES

transformers = pytest.importorskip("transformers")
from test_contrastive_loss import tiny_bart, tiny_gpt2  # noqa: E402

TOPICS = ["greetings", "emotion", "food"]


bow_embedder = HashedBagOfWords()


@pytest.fixture(scope="module")
def corpus():
    pairs = load_pairs(topics=TOPICS)
    train, valid, test = split_by_conversation(pairs, (0.7, 0.15, 0.15), seed=3)
    emb = TextEmbeddings(bow_embedder, [p.context for p in pairs] + [p.response for p in pairs])
    rng = np.random.default_rng(0)
    cal = calibrate(emb.cosine([p.context for p in train], [p.response for p in train]),
                    emb.cosine([p.context for p in train], [train[j].response for j in rng.permutation(len(train))]))
    groups = sample_groups(train, emb, cal, k=2, candidates=8, seed=0)
    tok = train_tokenizer([p.context for p in train] + [p.response for p in train], vocab_size=300)
    return dict(pairs=pairs, train=train, valid=valid, test=test, emb=emb, cal=cal, groups=groups, tok=tok)


def test_pairs_and_split_by_conversation(corpus):
    pairs, train, valid, test = corpus["pairs"], corpus["train"], corpus["valid"], corpus["test"]
    assert len(train) + len(valid) + len(test) == len(pairs) > 100
    conv = [{p.conversation for p in side} for side in (train, valid, test)]
    assert not (conv[0] & conv[1]) and not (conv[0] & conv[2]) and not (conv[1] & conv[2])
    assert ("Hello", "Hi") in {(p.context, p.response) for p in pairs}
    with pytest.raises(ValueError, match="fractions"):
        split_by_conversation(pairs, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="no conversations"):
        load_pairs(topics=["no-such-topic"])


def test_calibration_maps_cosines_into_signed_scores():
    rng = np.random.default_rng(0)
    cal = calibrate(rng.normal(0.4, 0.15, 2000), rng.normal(0.1, 0.15, 2000))
    s = cal(np.array([0.7, 0.25, -0.2, 5.0, -5.0]))
    assert s[0] > 0.5 and s[2] < -0.5 and abs(s[1]) < 0.15  # midpoint between the classes maps near 0
    assert (np.abs(s) <= 1).all() and 0.8 < cal.auc < 0.95
    with pytest.raises(ValueError, match="no positive link"):
        calibrate(rng.normal(0.1, 0.1, 200), rng.normal(0.6, 0.1, 200))  # true pairs less similar than random
    with pytest.raises(ValueError, match="at least 2"):
        calibrate([0.5], [0.1, 0.2])


def test_dual_sampling_groups(corpus):
    g, train = corpus["groups"], corpus["train"]
    assert g.k == 2 and len(g) == len(train)
    for side in SIDES:
        assert g.index[side].shape == (len(train), 2) and g.score[side].shape == (len(train), 2)
        assert np.abs(g.score[side]).max() <= 1
    for i in range(len(train)):  # a sampled pair never repeats the anchor's own text
        assert all(train[j].response != train[i].response for j in g.index["response_pos"][i])
        assert all(train[j].context != train[i].context for j in g.index["context_neg"][i])
    for side in ("response", "context"):  # positives are scored as better matches than negatives
        assert g.score[f"{side}_pos"].mean() > g.score[f"{side}_neg"].mean() + 0.2
    # the scores are the calibrated matching scores of the sampled pairs
    i, j = 5, int(g.index["response_pos"][5, 0])
    expect = corpus["cal"](corpus["emb"].cosine([train[i].context], [train[j].response]))[0]
    assert g.score["response_pos"][5, 0] == pytest.approx(expect, abs=1e-5)
    with pytest.raises(ValueError, match="candidates"):
        sample_groups(train, corpus["emb"], corpus["cal"], k=4, candidates=6)
    with pytest.raises(ValueError, match="k must be"):
        sample_groups(train, corpus["emb"], corpus["cal"], k=0)


def test_loader_batches_and_workers(corpus):
    tok, train, g = corpus["tok"], corpus["train"], corpus["groups"]
    ctx, resp = encode_pairs(tok, train)
    ds = GroupDataset(ctx, resp, g)
    b0 = next(iter(group_loader(ds, 4, tok.pad_token_id, shuffle=False)))
    b1 = next(iter(group_loader(ds, 4, tok.pad_token_id, shuffle=False, num_workers=1)))
    assert b0["context_ids"].shape[0] == 4 * (1 + 4 * 2) and b0["num_observed"] == 4
    assert (b0["scores"][:4] == 1).all() and (b0["scores"].abs() <= 1).all()
    for key in ("context_ids", "context_mask", "response_ids", "response_mask", "scores"):
        assert torch.equal(b0[key], b1[key])
    r0 = b0["response_ids"][0][b0["response_mask"][0].bool()].tolist()
    assert r0 == resp[0]
    # row 4 is pair 0's first response-side positive: pair 0's context with another pair's response
    c4 = b0["context_ids"][4][b0["context_mask"][4].bool()].tolist()
    r4 = b0["response_ids"][4][b0["response_mask"][4].bool()].tolist()
    assert c4 == ctx[0] and r4 == resp[int(g.index["response_pos"][0, 0])]
    with pytest.raises(ValueError, match="groups covers"):
        GroupDataset(ctx[:-1], resp[:-1], g)


def test_trainer_rejects_bad_reference():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="ref_model must be frozen"):
        Trainer(model, tiny_gpt2(seed=1))
    with pytest.raises(ValueError, match="vocabulary"):
        Trainer(model, frozen_copy(tiny_gpt2(vocab=60)))
    with pytest.raises(ValueError, match="not the trained model itself"):
        Trainer(model, model)
    with pytest.raises(ValueError, match="ref_model is None"):
        Trainer(model, None)
    with pytest.raises(ValueError, match="both be causal"):
        Trainer(model, frozen_copy(tiny_bart()))
    with pytest.raises(ValueError, match="max_alpha"):
        Trainer(model, frozen_copy(model), max_alpha=1.5)


def test_alpha_schedule_rises_smoothly():
    model = tiny_gpt2()
    t = Trainer(model, frozen_copy(model), mle_steps=5, anneal_steps=10, max_alpha=0.8, progress=False)
    a = [t.alpha(s) for s in range(25)]
    assert a[:5] == [0.0] * 5 and a[14:] == [pytest.approx(0.8)] * 11
    assert all(x < y for x, y in zip(a[5:14], a[6:15]))


def hand_batch(encdec=False):
    """2 observed pairs + one positive and one negative each (scores 1, 1, 0.8, -0.9, 0.6, -0.7)."""
    from leanops.contrastive.pipeline import GroupCollator

    items = [{"observed": ([5, 6, 7], [8, 9, 2]), "sampled": [([5, 6, 7], [10, 11, 2], 0.8), ([5, 6, 7], [12, 2], -0.9)]},
             {"observed": ([13, 14], [15, 2]), "sampled": [([16, 14], [15, 2], 0.6), ([17, 18, 19], [15, 2], -0.7)]}]
    return GroupCollator(pad_id=0)(items)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_bart])
def test_contrastive_steps_move_pairs_the_right_way(make):
    model = make().train()
    ref = frozen_copy(model)
    ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
    trainer = Trainer(model, ref, lr=3e-3, anneal_steps=0, max_alpha=1.0, progress=False)
    batch = hand_batch()
    calls = {"model": [], "ref": [], "ref_grad_mode": []}
    model.register_forward_hook(lambda m, a, o: calls["model"].append(o.logits.shape[0]))

    def ref_hook(m, a, o):
        calls["ref"].append(o.logits.shape[0])
        calls["ref_grad_mode"].append(torch.is_inference_mode_enabled())
    ref.register_forward_hook(ref_hook)
    for _ in range(15):
        out = trainer.step(batch)
    # one batched forward per model: all 6 rows together; a causal model first runs the 4 distinct contexts
    # once (shared by the rows that repeat them), a seq2seq model encodes them outside its forward
    per_step = [6] if make is tiny_bart else [4, 6]
    assert calls["model"] == per_step * 15 and calls["ref"] == per_step * 15 and all(calls["ref_grad_mode"])
    assert out["alpha"] == 1.0 and "contrastive" in out
    for k, v in ref.state_dict().items():
        assert torch.equal(v, ref_before[k])
    args = [batch[k] for k in ("context_ids", "response_ids", "context_mask", "response_mask")]
    with torch.no_grad():
        g = sequence_logprob(model.eval(), *args) - sequence_logprob(ref, *args)
    assert (g[batch["scores"] > 0] > 0).all() and (g[batch["scores"] < 0] < 0).all()


def test_mle_phase_runs_observed_rows_only_and_refresh_and_checkpoint(tmp_path):
    model = tiny_gpt2().train()
    ref = frozen_copy(model)
    seen = []
    model.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]),
                                with_kwargs=True)
    trainer = Trainer(model, ref, mle_steps=2, anneal_steps=2, refresh_every=3, progress=False,
                      checkpoint_dir=str(tmp_path), checkpoint_every=3)
    batch = hand_batch()
    alphas = [trainer.step(batch)["alpha"] for _ in range(3)]
    assert seen == [2, 2, 4, 6] and alphas[:2] == [0.0, 0.0] and alphas[2] > 0  # 4 distinct contexts, then 6 rows
    for k, v in model.state_dict().items():  # refreshed at step 3
        assert torch.equal(ref.state_dict()[k], v)
    assert not any(p.requires_grad for p in ref.parameters())
    other = Trainer(tiny_gpt2(seed=5), frozen_copy(tiny_gpt2(seed=5)), progress=False)
    other.load_checkpoint(str(tmp_path / "step3.pt"))
    assert other.step_count == 3 and torch.equal(other.model.lm_head.weight, model.lm_head.weight)


def test_experiment_main_tiny(tmp_path):
    from leanops.contrastive.experiment import ARMS, main

    cfg = dict(topics=TOPICS, vocab=300, n_embd=32, n_layer=1, n_head=2, pretrain_steps=4, continue_steps=2, batch=8,
               k=1, candidates=4)
    out = main(["--quick", "--seeds", "2", "--seed", "100"], cfg_override=cfg, embedder=bow_embedder,
               out_dir=str(tmp_path), progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["contrastive-quick-seeds100-101.json", "contrastive-quick-seeds100-101.png"]
    saved = json.loads((tmp_path / files[0]).read_text())
    assert saved["seeds"] == [100, 101] and set(saved["summary"]["table"]) == set(ARMS)
    d = saved["summary"]["paired_contrastive_minus_continued_mle"]["distinct_1"]
    r = saved["runs"]
    assert d["per_seed"][1] == pytest.approx(r[1]["results"][ARMS[2]]["distinct_1"] - r[1]["results"][ARMS[1]]["distinct_1"])
    assert isinstance(out["expectation_failures"], list)


def test_reference_cache_reuses_frozen_scores_until_refresh():
    from leanops.contrastive.pipeline import GroupCollator

    items = [{"observed": ([5, 6, 7], [8, 9, 2]), "sampled": [([5, 6, 7], [10, 11, 2], 0.8), ([5, 6, 7], [12, 2], -0.9)],
              "row_id": 0},
             {"observed": ([13, 14], [15, 2]), "sampled": [([16, 14], [15, 2], 0.6), ([17, 18, 19], [15, 2], -0.7)],
              "row_id": 3}]
    batch = GroupCollator(pad_id=0)(items)
    assert batch["row_ids"].tolist() == [0, 3, 1, 2, 4, 5]
    model = tiny_gpt2().train()
    ref = frozen_copy(model)
    calls = []
    ref.register_forward_hook(lambda *a: calls.append(1))
    trainer = Trainer(model, ref, anneal_steps=0, max_alpha=1.0, cache_reference=True, refresh_every=3, progress=False)
    plain = Trainer(copy_of := tiny_gpt2().train(), frozen_copy(copy_of), anneal_steps=0, max_alpha=1.0, progress=False)
    first, expect = [], []
    for s in range(2):  # same init (seed 0) and the same dropout draws; `plain` has no cache
        torch.manual_seed(s)
        first.append(trainer.step(batch)["contrastive"])
        torch.manual_seed(s)
        expect.append(plain.step(batch)["contrastive"])
    per_eval = 2  # one reference evaluation = 2 forwards: the 4 distinct contexts, then the 6 rows after them
    assert len(calls) == per_eval and first == pytest.approx(expect, abs=1e-5)
    trainer.step(batch)  # step 3 refreshes the reference: the cache is emptied
    trainer.step(batch)
    assert len(calls) == 2 * per_eval
