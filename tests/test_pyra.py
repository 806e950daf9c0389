"""leanops.pyra: the gate formula, pyra_merge (ToMe equality at zero token gate, gradcheck, the eager form),
schedules, patch / param_groups / export with peft LoRA, and every bad input the issue lists."""
import math

import pytest
import torch
from torch import nn

import leanops.pyra as pyra
from leanops import tome
from leanops.ops import merge as merge_ops

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")


def tiny_bert(layers=2):
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                  intermediate_size=32, attn_implementation="sdpa")
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def tiny_vit():
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32, num_labels=3)
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(cfg).eval()


def merge_inputs(b=2, n=11, c=8, r=3, dtype=torch.float64, seed=0, integer_sizes=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g, dtype=dtype)
    size = torch.randint(1, 4, (b, n), generator=g).float() if integer_sizes else None
    src, dst, unm = merge_ops.bipartite_match(x, r, 1)
    return x, size, src, dst, unm


# ----------------------------------------------------------------------------- the gate formula
def test_gate_formula_on_hand_made_values():
    gate = pyra.PYRAGate(2, 2).double()
    with torch.no_grad():
        gate.channel_gate_weight.copy_(torch.tensor([[1.0], [-2.0]]))
        gate.token_gate_weight.copy_(torch.tensor([[0.5, 1.0]]))
    s = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]], dtype=torch.float64)
    d = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
    # P = LayerNorm(S + D): rows [2, 4] -> [-1, 1], [2, 0] -> [1, -1] (eps 1e-5 barely matters)
    p = torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / math.sqrt(1 + 1e-5)
    wc, wt = gate(s, d)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expect_c = [2 * sig(1 * p[0, 0] - 2 * p[1, 0]), 2 * sig(1 * p[0, 1] - 2 * p[1, 1])]
    expect_t = [2 * sig(0.5 * p[0, 0] + p[0, 1]) - 1, 2 * sig(0.5 * p[1, 0] + p[1, 1]) - 1]
    assert wc.shape == (1, 1, 2) and wt.shape == (1, 2, 1)
    assert torch.allclose(wc.flatten(), torch.tensor(expect_c, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(wt.flatten(), torch.tensor(expect_t, dtype=torch.float64), atol=1e-12)


def test_gate_parameters_and_init():
    gate = pyra.PYRAGate(8, 3)
    names = {n: tuple(p.shape) for n, p in gate.named_parameters()}
    assert names == {"channel_gate_weight": (3, 1), "token_gate_weight": (1, 8), "norm.weight": (8,),
                     "norm.bias": (8,)}
    assert bool((gate.token_gate_weight == 0).all())
    assert float(gate.channel_gate_weight.detach().abs().max()) > 0  # Kaiming-uniform, not zeros
    assert float(gate.channel_gate_weight.detach().abs().max()) <= 1.0  # bound 1/sqrt(fan_in=1)


# ----------------------------------------------------------------------------- pyra_merge
@pytest.mark.parametrize("with_size", [True, False])
def test_zero_token_gate_equals_tome_merge(with_size):
    x, size, src, dst, unm = merge_inputs(dtype=torch.float32)
    size = size if with_size else None
    gate = pyra.PYRAGate(8, 3)
    out, s_out = pyra.pyra_merge(x, size, src, dst, unm, 1, gate)
    ref, s_ref = merge_ops.merge_wavg(x, size, src, dst, unm, 1)
    assert torch.equal(out, ref) and torch.equal(s_out, s_ref)


def test_pyra_merge_matches_eager_formula_and_changes_the_output():
    x, size, src, dst, unm = merge_inputs()
    gate = pyra.PYRAGate(8, 3).double()
    with torch.no_grad():
        gate.token_gate_weight.normal_()
    out, s_out = pyra.pyra_merge(x, size, src, dst, unm, 1, gate)
    eager, s_eager = pyra.eager_pyra_merge(x, size, src, dst, unm, 1, gate)
    assert torch.allclose(out, eager, atol=1e-10) and torch.equal(s_out, s_eager)
    plain, _ = merge_ops.merge_wavg(x, size, src, dst, unm, 1)
    assert (out - plain).abs().max() > 1e-3  # the gates really act


@pytest.mark.parametrize("with_size", [True, False])
@pytest.mark.parametrize("x_grad", [True, False])
def test_pyra_merge_gradients_equal_the_eager_formula(with_size, x_grad):
    """pyra_merge's own backward (one gradient buffer for x) against autograd through the eager formula, on a
    non-contiguous x, with and without sizes, and with x frozen (only the gate trains)."""
    x, size, src, dst, unm = merge_inputs(b=3, n=13, c=6, r=4)
    x = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, batch-minor strides
    assert not x.is_contiguous()
    size = size if with_size else None
    gate = pyra.PYRAGate(6, 4).double()
    with torch.no_grad():
        for p in gate.parameters():
            p.normal_(generator=torch.Generator().manual_seed(2))
    x.requires_grad_(x_grad)
    grad_out = torch.randn(3, 13 - 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    wrt = ([x] if x_grad else []) + list(gate.parameters())
    ours = torch.autograd.grad(pyra.pyra_merge(x, size, src, dst, unm, 1, gate)[0], wrt, grad_out)
    eager = torch.autograd.grad(pyra.eager_pyra_merge(x, size, src, dst, unm, 1, gate)[0], wrt, grad_out)
    for a, b in zip(ours, eager):
        assert torch.allclose(a, b, atol=1e-10)
    out = pyra.pyra_merge(x, size, src, dst, unm, 1, gate)[0]
    first = torch.autograd.grad(out, wrt, grad_out, retain_graph=True)
    again = torch.autograd.grad(out, wrt, grad_out)  # a retained graph backpropagates twice, same result
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_pyra_merge_gradcheck_x_and_all_gate_parameters():
    x, size, src, dst, unm = merge_inputs(b=2, n=9, c=4, r=3)
    gate = pyra.PYRAGate(4, 3).double()
    names = ["channel_gate_weight", "token_gate_weight", "norm.weight", "norm.bias"]
    g = torch.Generator().manual_seed(1)
    values = [torch.randn(tuple(dict(gate.named_parameters())[n].shape), generator=g, dtype=torch.float64)
              for n in names]

    def f(x, *params):
        with_params = dict(zip(names, params))
        step = lambda: pyra.pyra_merge(x, size, src, dst, unm, 1, gate)  # noqa: E731
        return torch.func.functional_call(_Step(gate, step), {f"gate.{k}": v for k, v in with_params.items()}, ())

    inputs = [x.requires_grad_()] + [v.requires_grad_() for v in values]
    assert torch.autograd.gradcheck(f, inputs, atol=1e-7)


class _Step(nn.Module):
    def __init__(self, gate, step):
        super().__init__()
        self.gate, self.step = gate, step

    def forward(self):
        return self.step()[0]


def test_pyra_merge_bad_input():
    x, size, src, dst, unm = merge_inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match="dim=4"):
        pyra.pyra_merge(x, size, src, dst, unm, 1, pyra.PYRAGate(4, 3))
    with pytest.raises(ValueError, match="r=5"):
        pyra.pyra_merge(x, size, src, dst, unm, 1, pyra.PYRAGate(8, 5))
    with pytest.raises(TypeError, match="gate"):
        pyra.pyra_merge(x, size, src, dst, unm, 1, "not a gate")
    with pytest.raises(ValueError, match="src_idx"):
        pyra.pyra_merge(x, size, src + 100, dst, unm, 1, pyra.PYRAGate(8, 3))
    with pytest.raises(ValueError, match="x"):
        pyra.pyra_merge(x[0], size, src, dst, unm, 1, pyra.PYRAGate(8, 3))
    with pytest.raises(ValueError, match="dest"):
        pyra.PYRAGate(8, 3)(torch.zeros(2, 3, 8), torch.zeros(2, 2, 8))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="dim"):
            pyra.PYRAGate(bad, 3)


# ----------------------------------------------------------------------------- schedules
def test_named_schedules_on_vit_b16_and_rescaled():
    assert pyra.resolve("high", 12, 197) == [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3]
    assert pyra.resolve("low", 12, 197) == [16] * 11 + [10]
    for tokens in (32, 64, 128):
        for name in ("low", "high"):
            sched = pyra.rescale(name, 6, tokens)
            left = pyra.tokens_per_layer(sched, tokens)  # fits: no layer merges more than it can
            full = sum(pyra.SCHEDULES[name]) / 196
            assert abs(sum(sched) / (tokens - 1) - full) < 0.1
            assert left[-1] == tokens - sum(sched)
    assert pyra.rescale("high", 6, 64)[0] == round(74 / 196 * 63)  # depth 1/6 = ViT-B/16's layer 2


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="r has 3 entries"):
        pyra.resolve([1, 1, 1], 2, 16)
    with pytest.raises(ValueError, match="'mid'"):
        pyra.resolve("mid", 2, 16)
    with pytest.raises(ValueError, match=r"r\[1\]=6 is larger than the tokens left"):
        pyra.tokens_per_layer([4, 6], 16)
    with pytest.raises(ValueError, match="num_tokens"):
        pyra.patch(tiny_bert(), r="high")


# ----------------------------------------------------------------------------- patch
def test_patch_trains_only_lora_gates_and_head_with_peft():
    from peft.tuners.lora import LoraLayer

    model = pyra.patch(tiny_vit(), r=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "tome_merge.gate" in n or n.startswith("classifier") for n in trainable)
    assert any("classifier" in n for n in trainable) and any("gate" in n for n in trainable)
    lora = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(lora) == 2 * 4  # q, k, v, o in each of 2 layers, made by peft
    assert len(pyra.gates(model)) == 2
    frozen = pyra.patch(tiny_vit(), r=2, train_gates=False)
    assert not any(p.requires_grad for g in pyra.gates(frozen) for p in g.parameters())
    plain = pyra.patch(tiny_vit(), r=2, gates=False)
    assert pyra.gates(plain) == []


def test_patched_model_equals_tome_at_zero_token_gate():
    ids = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(0))
    a = pyra.patch(tiny_bert(), r=[4, 3], num_tokens=16)
    b = tome.patch(tiny_bert(), r=[4, 3])
    with torch.no_grad():
        ya, yb = a(input_ids=ids).last_hidden_state, b(input_ids=ids).last_hidden_state
    assert ya.shape == (3, 9, 16) and torch.allclose(ya, yb, atol=1e-6)  # LoRA B starts at zero


def test_tome_merge_hook_is_called():
    calls = []

    def hook(x, size, src, dst, unm, p):
        calls.append(src.shape[1])
        return merge_ops.merge_wavg(x, size, src, dst, unm, p)

    model = tome.patch(tiny_bert(), r=2)
    model.encoder.layer[1].tome_merge = hook
    with torch.no_grad():
        model(input_ids=torch.randint(0, 50, (1, 10)))
    assert calls == [2]


def test_param_groups_apply_the_gate_lr():
    model = pyra.patch(tiny_vit(), r=2)
    with torch.no_grad():
        for g in pyra.gates(model):
            g.token_gate_weight.normal_()
    groups = pyra.param_groups(model, lr=0.01, gate_lr=0.5)
    opt = torch.optim.SGD(groups)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    gate_w = pyra.gates(model)[0].token_gate_weight
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    before_g, before_l = gate_w.detach().clone(), lora_a.detach().clone()
    model(pixel_values=torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))).logits.sum().backward()
    grad_g, grad_l = gate_w.grad.clone(), lora_a.grad.clone()
    opt.step()
    assert grad_g.abs().max() > 0
    assert torch.allclose(gate_w.detach(), before_g - 0.5 * grad_g, atol=1e-7)
    assert torch.allclose(lora_a.detach(), before_l - 0.01 * grad_l, atol=1e-8)
    with pytest.raises(ValueError, match="gate_lr"):
        pyra.param_groups(model, lr=0.1, gate_lr=-1)
    with pytest.raises(ValueError, match="patched"):
        pyra.param_groups(tiny_vit(), lr=0.1, gate_lr=0.1)


def test_export_merges_lora_and_keeps_gates():
    from peft.tuners.lora import LoraLayer

    model = pyra.patch(tiny_vit(), r="high")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "token_gate" in n:
                p.normal_(std=0.5)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(pixel_values=pixels).logits
        pyra.export(model)
        after = model(pixel_values=pixels).logits
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert len(pyra.gates(model)) == 2 and model._tome_state.tokens_per_layer == [9, 5]
    assert torch.allclose(before, after, atol=1e-5)


def test_patch_bad_input():
    model = pyra.patch(tiny_bert(), r=[2, 2], num_tokens=16)
    with pytest.raises(ValueError, match="already patched"):
        pyra.patch(model, r=1)
    with pytest.raises(ValueError, match="already patched"):
        pyra.patch(tome.patch(tiny_bert(), r=1), r=1)
    with pytest.raises(ValueError, match="export"):
        pyra.export(tiny_bert())
    with pytest.raises(ValueError, match="r has 3 entries"):
        pyra.patch(tiny_bert(), r=[1, 1, 1])
    with pytest.raises(ValueError, match=r"r\[0\]=9 is larger than the tokens left"):
        pyra.patch(tiny_vit(), r=[9, 1])  # 17 tokens: 8 can merge
    with pytest.raises(ValueError, match="lora_rank"):
        pyra.patch(tiny_bert(), r=1, lora_rank=0)
    with pytest.raises(TypeError, match="BertModel"):
        pyra.patch(nn.Linear(2, 2), r=1)
    short = torch.randint(0, 50, (1, 6))  # 6 tokens: r[0]=2 fits (2 can merge), r[1]=2 does not (4 tokens left, 1)
    with pytest.raises(ValueError, match=r"r\[1\]=2 is larger than the tokens left"):
        model(input_ids=short)


def test_unpatch_restores_the_tome_free_model():
    model = pyra.patch(tiny_bert(), r=[2, 2], num_tokens=16)
    pyra.unpatch(model)
    assert not hasattr(model, "_tome_state") and pyra.gates(model) == []
    out = model(input_ids=torch.randint(0, 50, (1, 16))).last_hidden_state
    assert out.shape == (1, 16, 16)


def test_gates_draw_nothing_from_the_global_generator():
    a, b = tiny_bert(), tiny_bert()
    torch.manual_seed(3)
    pyra.patch(a, r=[2, 2], num_tokens=16, gates=True)
    after_pyra = torch.rand(1)
    torch.manual_seed(3)
    pyra.patch(b, r=[2, 2], num_tokens=16, gates=False)
    assert torch.equal(after_pyra, torch.rand(1))  # so a head made next starts the same in PYRA and ToMe runs


def test_pyra_run_with_frozen_gates_pairs_exactly_with_tome_run():
    from leanops.pyra.train import build, train

    base = tiny_bert()
    g = torch.Generator().manual_seed(0)
    ids, y = torch.randint(0, 50, (16, 16), generator=g), torch.randint(0, 3, (16,), generator=g)
    heads = []
    for gates in (False, True):
        model = build(base, 3, [4, 3], gates, 16, 4, seed=5)
        train(model, ids, torch.ones_like(ids), y, epochs=1, batch_size=8, lr=1e-2, gate_lr=0.0, seed=5)
        heads.append(model.head.weight.detach())
    assert torch.equal(heads[0], heads[1])  # same init, batches and dropout: only the gates differ


# ----------------------------------------------------------------------------- every supported family
def tiny_clip():
    cfg = transformers.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    return transformers.CLIPVisionModel(cfg).eval()


FAMILIES = {  # model maker, LoRA'd projection names, input maker, output
    "ViT": (tiny_vit, ("q_proj", "k_proj", "v_proj", "o_proj"),
            lambda g: dict(pixel_values=torch.randn(2, 3, 32, 32, generator=g)), lambda out: out.logits),
    "CLIP": (tiny_clip, ("q_proj", "k_proj", "v_proj", "out_proj"),
             lambda g: dict(pixel_values=torch.randn(2, 3, 32, 32, generator=g)), lambda out: out.pooler_output),
    "Bert": (tiny_bert, ("query", "key", "value", "dense"),
             lambda g: dict(input_ids=torch.randint(0, 50, (2, 17), generator=g)), lambda out: out.last_hidden_state),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_patch_equals_tome_then_exports_on_every_supported_family(family):
    from peft.tuners.lora import LoraLayer

    make, projections, inputs, output = FAMILIES[family]
    model = pyra.patch(make(), r=[4, 3], num_tokens=None if family != "Bert" else 17)
    lora = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert lora == set(projections)  # the attention projections of this family, adapted by peft
    assert len(pyra.gates(model)) == 2
    x = inputs(torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, plain = output(model(**x)), output(tome.patch(make(), r=[4, 3])(**x))
    assert torch.allclose(ours, plain, atol=1e-6)  # zero token gate, zero LoRA B: ToMe exactly
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "token_gate" in n:
                p.normal_(std=0.5, generator=torch.Generator().manual_seed(1))
        adapted = output(model(**x))
        pyra.export(model)
        exported = output(model(**x))
    assert not torch.allclose(adapted, plain, atol=1e-3)  # the adapters and gates now change the output
    assert not any(isinstance(m, LoraLayer) for m in model.modules()) and len(pyra.gates(model)) == 2
    assert torch.allclose(adapted, exported, atol=1e-5)
