"""sequence_logprob with each distinct context run once (share_context) equals the single forward over every
row's context + response: values and gradients, tiny random GPT-2 / BART / T5, padding on either side, a pad
id that is also a real token, one-token responses, random shapes (hypothesis); when it is chosen; bad input."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from leanops.contrastive import sequence_logprob

transformers = pytest.importorskip("transformers")

from test_contrastive_loss import pad_batch, tiny_bart, tiny_gpt2, tiny_t5  # noqa: E402

PAD = 7  # also a real token in the rows below
# three contexts, repeated as a group-wise batch repeats them; [5, 6] and [5, 6, 7] differ only by a
# trailing token equal to the pad id
CONTEXTS = [[5, 6, 7], [5, 6], [3, 4, 5, 6, 8, 9]]
ROWS = [(0, [8, 9]), (0, [10, 11, 12]), (1, [9]), (0, [13]), (2, [14, 15, 16, 17]), (1, [7, 7]), (2, [20])]


def batch(ctx_side="right", rows=ROWS, contexts=CONTEXTS):
    c_ids, c_mask = pad_batch([contexts[c] for c, _ in rows], ctx_side, pad=PAD)
    r_ids, r_mask = pad_batch([r for _, r in rows], "right", pad=PAD)
    return c_ids, r_ids, c_mask, r_mask


def logprob_and_grads(model, args, share):
    model.zero_grad(set_to_none=True)
    out = sequence_logprob(model, *args, share_context=share)
    (out * torch.linspace(0.5, 1.5, len(out))).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_bart, tiny_t5])
@pytest.mark.parametrize("ctx_side", ["left", "right"])
def test_shared_equals_single_forward_values_and_gradients(make, ctx_side):
    model = make()  # eval mode: no dropout, so both paths see the same function
    args = batch(ctx_side)
    plain, g_plain = logprob_and_grads(model, args, False)
    shared, g_shared = logprob_and_grads(model, args, True)
    assert torch.isfinite(shared).all()
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    assert g_shared.keys() == g_plain.keys()
    for name in g_plain:
        torch.testing.assert_close(g_shared[name], g_plain[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_bart])
def test_one_token_responses(make):
    model = make()
    args = batch(rows=[(0, [8]), (0, [9]), (1, [10]), (2, [11])])
    torch.testing.assert_close(sequence_logprob(model, *args, share_context=True),
                               sequence_logprob(model, *args, share_context=False), atol=1e-5, rtol=1e-5)


def context_rows_seen(model, args, share):
    seen = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        with torch.no_grad():
            sequence_logprob(model, *args, share_context=share)
    finally:
        hook.remove()
    return seen


def test_auto_shares_only_when_contexts_repeat():
    model = tiny_gpt2()
    c_ids, r_ids, c_mask, r_mask = batch()
    # 3 distinct contexts in 7 rows: the contexts run once (3 rows), then the 7 responses (all but the last token)
    assert context_rows_seen(model, (c_ids, r_ids, c_mask, r_mask), None) == [(3, 6), (7, 3)]
    assert context_rows_seen(model, (c_ids, r_ids, c_mask, r_mask), False) == [(7, 10)]
    distinct = [0, 4, 2]  # one row per context: nothing to share, one forward
    args = (c_ids[distinct], r_ids[distinct], c_mask[distinct], r_mask[distinct])
    assert len(context_rows_seen(model, args, None)) == 1


def test_gradient_checkpointing_in_training_falls_back_or_raises():
    model = tiny_gpt2().train()
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()  # renamed in 5.2x
    args = batch()
    assert len(context_rows_seen(model, args, None)) == 1  # no cache under checkpointing: the single forward
    with pytest.raises(ValueError, match="share_context=True.*gradient checkpointing"):
        sequence_logprob(model, *args, share_context=True)


def test_share_context_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="share_context must be None, True or False"):
        sequence_logprob(tiny_gpt2(), *batch(), share_context="yes")


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_random_groups_shared_equals_single_forward(data):
    n_ctx = data.draw(st.integers(1, 4))
    contexts = [data.draw(st.lists(st.integers(3, 49), min_size=1, max_size=6)) for _ in range(n_ctx)]
    rows = [(data.draw(st.integers(0, n_ctx - 1)), data.draw(st.lists(st.integers(3, 49), min_size=1, max_size=5)))
            for _ in range(data.draw(st.integers(1, 8)))]
    side = data.draw(st.sampled_from(["left", "right"]))
    model = tiny_gpt2(seed=1)
    args = batch(side, rows, contexts)
    with torch.no_grad():
        torch.testing.assert_close(sequence_logprob(model, *args, share_context=True),
                                   sequence_logprob(model, *args, share_context=False), atol=1e-5, rtol=1e-5)
