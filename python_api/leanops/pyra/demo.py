"""``leanops demo`` section: PYRA on the real pretrained all-MiniLM-L6-v2 and real sentences (stdlib
docstrings): what it trains, what it keeps, what it costs. The gates start equal to ToMe (zero token gate);
a second PYRA copy has gates moved off zero (as after training) to show they act. Nothing is written."""
from __future__ import annotations

import copy

import torch

from ..bench.timing import ratio, time_providers


def _count(model, pred):
    return sum(p.numel() for n, p in model.named_parameters() if pred(n, p))


def section(quick: bool) -> None:
    from .. import pyra, tome
    from ..tome import minilm

    print("\n== PYRA on all-MiniLM-L6-v2 (real pretrained BERT; sentences from Python stdlib docstrings)")
    tok, base = minilm.load_minilm()
    length = 64
    texts = minilm.stdlib_sentences(16 if quick else 64, min_words=40)
    batch = tok(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    ref = minilm.embed(base, batch)
    models = {"LoRA, no merging": pyra.patch(copy.deepcopy(base), r=0)}
    for sched in ("low", "high"):
        models[f"ToMe + LoRA ({sched})"] = pyra.patch(copy.deepcopy(base), r=sched, num_tokens=length, gates=False)
        models[f"PYRA + LoRA ({sched})"] = pyra.patch(copy.deepcopy(base), r=sched, num_tokens=length)
    moved = pyra.patch(copy.deepcopy(base), r="high", num_tokens=length)
    torch.manual_seed(0)
    with torch.no_grad():
        for g in pyra.gates(moved):
            g.token_gate_weight.normal_(std=0.05)
    models["PYRA + LoRA (high), gates moved"] = moved
    for m in models.values():
        pyra.export(m)  # LoRA merged: what inference runs (LoRA B is zero here, so LoRA changes nothing yet)
    timings = time_providers({n: (lambda m=m: minilm.embed(m, batch)) for n, m in models.items()},
                             repeats=3 if quick else 7)
    anchor = "LoRA, no merging"
    trainable = pyra.patch(copy.deepcopy(base), r="high", num_tokens=length)
    total = _count(trainable, lambda n, p: True)
    lora = _count(trainable, lambda n, p: "lora_" in n)
    gates = _count(trainable, lambda n, p: "tome_merge" in n)
    print(f"{len(texts)} sentences padded/truncated to {length} tokens; trainable at high: LoRA {lora:,} + gates "
          f"{gates:,} of {total:,} parameters ({(lora + gates) / total:.2%}); speed: median of "
          f"{timings[anchor].n} interleaved repeats, anchor: {anchor}")
    print(f"{'model':34} {'tokens per layer':28} {'cos vs unmerged':>15} {'x anchor (spread)':>20}")
    tome_high = minilm.embed(models["ToMe + LoRA (high)"], batch)
    for name, m in models.items():
        emb = minilm.embed(m, batch)
        cos = float((emb * ref).sum(-1).mean())
        print(f"{name:34} {str(tome.tokens_per_layer(m)):28} {cos:15.4f} "
              f"{str(ratio(timings[anchor], timings[name], anchor)):>20}")
    same = torch.allclose(minilm.embed(models["PYRA + LoRA (high)"], batch), tome_high, atol=1e-5)
    print(f"PYRA at its init (zero token gate) equals ToMe: {same}; moved gates change the embedding by "
          f"{float((minilm.embed(moved, batch) - tome_high).norm(dim=-1).mean()):.4f} (mean L2)")
