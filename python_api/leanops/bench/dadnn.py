"""DADNN benchmarks: per-scene heads in one batched pass against a Python loop over scenes, and the
end-to-end training step of DADNN against the shared model.

Heads: S = 20 and 200 scenes, batch 4096 rows of a 32-wide bottom output, heads 32 -> 16 -> 1, scenes drawn
with Zipf traffic (exponent 1.1), forward and forward+backward, float32. The anchor is what a skilled user
writes: a Python loop over the scenes present (``SceneHeads.loop``: select the rows, two ``addmm``, put
them back). Ablation row: the same stacked weights gathered per row (``W[scene]``, one ``bmm`` of
``[B, 1, in] x [B, in, out]``), which isolates what the tiling by scene adds.
Training step (Adam, forward + backward + step on one batch): the shared model (one head, scene id as a
feature) is the anchor; DADNN-MLP without and with knowledge transfer, DADNN-MMoE with it.
"""
from __future__ import annotations

import json
import os

import torch

from ..dadnn.data import generate, zipf_traffic
from ..dadnn.heads import SceneHeads
from ..dadnn.model import DADNN, dadnn_loss
from .timing import device_tag, machine, ratio, runner_note, time_providers

LOOP, BATCHED, PER_ROW = "python loop over scenes", "batched (scene tiles)", "per-row weight gather"
SHARED = "shared model"
HEAD_SHAPE = dict(rows=4096, in_dim=32, hidden=16, scenes=(20, 200))
HEAD_QUICK = dict(rows=1024, in_dim=32, hidden=16, scenes=(20, 200))
STEP_ROWS, STEP_ROWS_QUICK = 2048, 256


def head_inputs(rows, in_dim, hidden, n_scenes, grad=False, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    heads = SceneHeads(n_scenes, in_dim, (hidden,)).to(device)
    p = torch.tensor(zipf_traffic(n_scenes, 1.1), dtype=torch.float64)
    scene = torch.multinomial(p, rows, replacement=True, generator=g).to(device)
    x = torch.randn(rows, in_dim, generator=g).to(device).requires_grad_(grad)
    return heads, x, scene


def per_row_gather(heads: SceneHeads, x, scene):
    h = x.unsqueeze(1)
    for i, layer in enumerate(heads.layers):
        h = torch.baddbmm(layer.bias[scene].unsqueeze(1), h, layer.weight[scene])
        if i < len(heads.layers) - 1:
            h = torch.relu(h)
    return h.squeeze(1)


def head_providers(heads, x, scene, backward: bool):
    def call(fn):
        def run():
            out = fn()
            if backward:
                out.sum().backward()
            return out
        return run

    return {LOOP: call(lambda: heads.loop(x, scene)), BATCHED: call(lambda: heads(x, scene)),
            PER_ROW: call(lambda: per_row_gather(heads, x, scene))}


def step_models(n_scenes=20):
    """name -> (model kwargs, kt_weight) of the training-step rows."""
    return {SHARED: (dict(scene_heads=False), 0.0), "DADNN-MLP (no KT)": ({}, 0.0), "DADNN-MLP + KT": ({}, 0.1),
            "DADNN-MMoE + KT": (dict(bottom="mmoe"), 0.1)}


def step_providers(rows: int, device="cpu", seed=0):
    data = generate(max(4 * rows, 4000), seed=seed)
    batch = data.subset(slice(0, rows))
    inputs = [t.to(device) for t in batch.model_inputs()]
    label = batch.label.to(device)
    fns = {}
    for name, (kwargs, kt) in step_models().items():
        torch.manual_seed(seed)
        model = DADNN(data.n_scenes, data.item_category, (data.n_groups,), **kwargs).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt, kt=kt):
            out = model(*inputs, all_heads=kt > 0)
            loss = dadnn_loss(out, label, inputs[0], kt)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.detach()
        fns[name] = step
    return fns, {"rows": rows, "behaviours": int(inputs[3].shape[0]), "scenes": data.n_scenes}


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = HEAD_QUICK if quick else HEAD_SHAPE
    repeats = repeats or (5 if quick else 15)
    rows = []
    cases = [(s, mode) for s in shape["scenes"] for mode in ("fwd", "fwd+bwd")]
    for n_scenes, mode in tqdm(cases, desc="bench dadnn heads", unit="case"):
        heads, x, scene = head_inputs(shape["rows"], shape["in_dim"], shape["hidden"], n_scenes,
                                      grad=mode == "fwd+bwd", device=device)
        fns = head_providers(heads, x, scene, mode == "fwd+bwd")
        timings = time_providers(fns, device, repeats, warmup=2)
        for name, t in timings.items():
            rows.append({"part": "heads", "scenes": n_scenes, "mode": mode, "provider": name, **t.to_dict("ms"),
                         "vs_anchor": ratio(timings[LOOP], t, LOOP).to_dict()})
    step_rows = STEP_ROWS_QUICK if quick else STEP_ROWS
    fns, layout = step_providers(step_rows, device)
    timings = time_providers(fns, device, max(3, repeats // 2), warmup=1)
    for name, t in timings.items():
        rows.append({"part": "train step", "scenes": layout["scenes"], "mode": f"Adam step, batch {step_rows}",
                     "provider": name, **t.to_dict("ms"), "vs_anchor": ratio(timings[SHARED], t, SHARED).to_dict()})
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "dadnn", "device": tag, "machine": machine(), "runner": runner_note("dadnn", quick),
              "anchor": {"heads": LOOP, "train step": SHARED}, "repeats": repeats, "dtype": "float32",
              "heads_shape": {k: v for k, v in shape.items() if k != "scenes"}, "train_step": layout, "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"dadnn-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"{'part':11} {'S':>4} {'mode':24} {'provider':26} {'median ms':>10} {'p25-p75 ms':>17} {'x anchor (spread)':>20}")
    for r in rows:
        v = r["vs_anchor"]
        print(f"{r['part']:11} {r['scenes']:4} {r['mode']:24} {r['provider']:26} {r['median_ms']:10.3f} "
              f"{r['p25_ms']:8.3f}-{r['p75_ms']:<8.3f} {v['ratio']:8.2f}x ({v['ratio_p25']:.2f}-{v['ratio_p75']:.2f})")
    print(f"ratio = anchor median / provider median, (spread) = p25-p75 of the paired per-repeat ratios; anchors: "
          f"heads: {LOOP}; train step: {SHARED}; heads B={shape['rows']}, in={shape['in_dim']}, hidden={shape['hidden']}; "
          f"train step {layout}; runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result
