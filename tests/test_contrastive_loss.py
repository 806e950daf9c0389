"""group_contrastive_loss against its formula on hand-made values, sequence_logprob on tiny random
GPT-2 / BART / T5 models (batched equals one-by-one, equals a hand-written sum), and the bad inputs."""
import math

import pytest
import torch

from leanops.contrastive import group_contrastive_loss, sequence_logprob

transformers = pytest.importorskip("transformers")


def tiny_gpt2(vocab=50, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_bart(vocab=50, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BartConfig(vocab_size=vocab, d_model=32, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                  decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                                  eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    return transformers.BartForConditionalGeneration(cfg).eval()


def tiny_t5(vocab=50, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
                                num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return transformers.T5ForConditionalGeneration(cfg).eval()


# --- the loss -------------------------------------------------------------------------------------

def test_loss_matches_formula_on_hand_made_values():
    lm = torch.tensor([-3.0, -5.0, -2.0, -7.0])
    lr = torch.tensor([-4.0, -4.0, -2.0, -6.5])
    s = torch.tensor([1.0, -1.0, 0.3, -0.6])
    g = [1.0, -1.0, 0.0, -0.5]
    h = [1 / (1 + math.exp(-x)) for x in g]
    expected = sum(-math.log(0.5 + si * (hi - 0.5)) for si, hi in zip(s.tolist(), h)) / 4
    assert group_contrastive_loss(lm, lr, s).item() == pytest.approx(expected, rel=1e-6)


def test_score_one_is_minus_log_h_and_minus_one_is_minus_log_one_minus_h():
    lm, lr = torch.tensor([-1.0]), torch.tensor([-2.5])
    h = 1 / (1 + math.exp(-1.5))
    assert group_contrastive_loss(lm, lr, torch.tensor([1.0])).item() == pytest.approx(-math.log(h), rel=1e-6)
    assert group_contrastive_loss(lm, lr, torch.tensor([-1.0])).item() == pytest.approx(-math.log(1 - h), rel=1e-6)
    # s = 0 asks for nothing: -log(0.5) whatever the models say
    assert group_contrastive_loss(lm, lr, torch.tensor([0.0])).item() == pytest.approx(math.log(2), rel=1e-6)


def test_clamp_keeps_loss_finite_and_gradient_direction():
    lm = torch.tensor([-100.0, 0.0], requires_grad=True)
    lr = torch.tensor([0.0, -100.0])
    loss = group_contrastive_loss(lm, lr, torch.tensor([1.0, -1.0]))
    assert loss.item() == pytest.approx(-math.log(1e-6), rel=1e-4)  # both pairs saturate against their target
    lm2 = torch.tensor([-2.0, -2.0], requires_grad=True)
    group_contrastive_loss(lm2, torch.tensor([-2.0, -2.0]), torch.tensor([1.0, -1.0])).backward()
    assert lm2.grad[0] < 0 < lm2.grad[1]  # descent raises the positive pair's likelihood, lowers the negative's


def test_reference_gets_no_gradient():
    lm = torch.tensor([-1.0, -2.0], requires_grad=True)
    lr = torch.tensor([-1.5, -1.0], requires_grad=True)
    group_contrastive_loss(lm, lr, torch.tensor([1.0, -0.5])).backward()
    assert lr.grad is None and lm.grad is not None


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), float("inf")])
def test_scores_outside_range_raise(bad):
    with pytest.raises(ValueError, match="scores"):
        group_contrastive_loss(torch.zeros(2), torch.zeros(2), torch.tensor([0.5, bad]))


def test_mismatched_lengths_and_shapes_raise():
    with pytest.raises(ValueError, match="same length"):
        group_contrastive_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="same length"):
        group_contrastive_loss(torch.zeros(3), torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="logp_model must be 1-D"):
        group_contrastive_loss(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        group_contrastive_loss(torch.zeros(3), torch.zeros(3), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="empty"):
        group_contrastive_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))


# --- sequence_logprob -----------------------------------------------------------------------------

def by_hand_causal(model, ctx, resp):
    ids = torch.tensor([ctx + resp])
    logp = model(input_ids=ids).logits.float().log_softmax(-1)[0]
    return sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(resp))


def by_hand_seq2seq(model, ctx, resp):
    start = model.config.decoder_start_token_id
    out = model(input_ids=torch.tensor([ctx]), decoder_input_ids=torch.tensor([[start] + resp[:-1]]))
    logp = out.logits.float().log_softmax(-1)[0]
    return sum(logp[j, t].item() for j, t in enumerate(resp))


ROWS = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 14]), ([3, 4, 5, 6, 7, 8], [9])]


def pad_batch(seqs, side, pad=0):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    return ids, mask


@pytest.mark.parametrize("make,by_hand", [(tiny_gpt2, by_hand_causal), (tiny_bart, by_hand_seq2seq),
                                          (tiny_t5, by_hand_seq2seq)])
@pytest.mark.parametrize("ctx_side", ["left", "right"])
def test_batched_equals_one_by_one_and_by_hand(make, by_hand, ctx_side):
    model = make()
    c_ids, c_mask = pad_batch([c for c, _ in ROWS], ctx_side, pad=7)  # pad id that is also a real token
    r_ids, r_mask = pad_batch([r for _, r in ROWS], "right", pad=7)
    with torch.no_grad():
        batched, counts = sequence_logprob(model, c_ids, r_ids, c_mask, r_mask, return_token_counts=True)
        for i, (c, r) in enumerate(ROWS):
            alone = sequence_logprob(model, torch.tensor([c]), torch.tensor([r]))
            assert batched[i].item() == pytest.approx(alone.item(), abs=1e-4)
            assert batched[i].item() == pytest.approx(by_hand(model, c, r), abs=1e-4)
    assert counts.tolist() == [len(r) for _, r in ROWS]
    assert batched.dtype == torch.float32 and (batched < 0).all()


def test_logprob_is_differentiable():
    model = tiny_gpt2().train()
    c_ids, c_mask = pad_batch([c for c, _ in ROWS], "left")
    r_ids, r_mask = pad_batch([r for _, r in ROWS], "right")
    sequence_logprob(model, c_ids, r_ids, c_mask, r_mask).sum().backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0


def test_logprob_bad_inputs():
    model = tiny_gpt2()
    c = torch.tensor([[5, 6], [7, 8]])
    r = torch.tensor([[9, 10], [11, 12]])
    with pytest.raises(ValueError, match="empty response"):
        sequence_logprob(model, c, r, response_mask=torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="empty response"):
        sequence_logprob(model, c, torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty context"):
        sequence_logprob(model, c, r, context_mask=torch.tensor([[0, 0], [1, 1]]))
    with pytest.raises(ValueError, match="same number of rows"):
        sequence_logprob(model, c, r[:1])
    with pytest.raises(ValueError, match="response_mask"):
        sequence_logprob(model, c, r, response_mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match="context_ids"):
        sequence_logprob(model, c.float(), r)
