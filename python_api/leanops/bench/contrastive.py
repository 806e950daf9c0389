"""Contrastive family benchmarks: the cost of one group-wise contrastive training step against one MLE step
at the same batch of observed pairs, and the data pipeline's throughput.

Model and data as in ``python -m leanops.contrastive.experiment --quick``: a small GPT-2 trained from
scratch, real chatterbot-corpus batches (the experiment's BPE tokenizer). A contrastive step with k sampled
pairs per side runs ``B * (1 + 4k)`` rows through the model (forward + backward) and through the frozen
reference (forward under ``torch.inference_mode``); the issue's target is at most ``(K + 2)`` MLE steps for
``K = 4k`` sampled pairs per example. Ablation row: the same rows through the model only (NLL on every
row, no reference), which isolates what the reference pass costs; the "reference cached" row is a
contrastive step after the first epoch with ``Trainer(cache_reference=True)`` (the frozen reference's
scores of each row are computed once and reused). The pipeline rows time the collation of
one batch from the precomputed groups (what a DataLoader worker does per batch); the groups themselves are
sampled once (BM25 + matching), timed once, with a hashed bag-of-words matcher standing in for MiniLM so
that the timing does not include the MiniLM embedding pass (timed separately in the full run).
"""
from __future__ import annotations

import json
import os
import time

import torch

from .timing import device_tag, machine, ratio, runner_note, time_providers

FULL = dict(batch=32, ks=(1, 2), n_embd=64, n_layer=2, vocab=800, repeats=9)
QUICK = dict(batch=8, ks=(1,), n_embd=64, n_layer=2, vocab=800, repeats=3)
MLE = "MLE step (anchor)"


def setup(cfg: dict, device: str = "cpu", seed: int = 0) -> dict:
    from ..contrastive import (GroupDataset, HashedBagOfWords, TextEmbeddings, calibrate, encode_pairs, load_pairs,
                               sample_groups, split_by_conversation, train_tokenizer)
    from ..contrastive.experiment import tiny_gpt2
    from ..contrastive.trainer import frozen_copy

    pairs = load_pairs()
    train, valid, _ = split_by_conversation(pairs, seed=seed)
    tok = train_tokenizer([p.context for p in train] + [p.response for p in train], cfg["vocab"])
    emb = TextEmbeddings(HashedBagOfWords(), [p.context for p in pairs] + [p.response for p in pairs])
    perm = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed)).tolist()
    cal = calibrate(emb.cosine([p.context for p in valid], [p.response for p in valid]),
                    emb.cosine([p.context for p in valid], [valid[j].response for j in perm]))
    ctx, resp = encode_pairs(tok, train, max_tokens=20)
    out = {"tokenizer": tok, "train": train, "sampling_seconds": {}, "datasets": {}}
    for k in cfg["ks"]:
        start = time.perf_counter()
        groups = sample_groups(train, emb, cal, k=k, candidates=max(16, 2 * k), seed=seed)
        out["sampling_seconds"][k] = time.perf_counter() - start
        out["datasets"][k] = GroupDataset(ctx, resp, groups)
    model = tiny_gpt2(len(tok), cfg["n_embd"], cfg["n_layer"], 4, seed, tok).to(device)
    out["model"], out["ref"] = model, frozen_copy(model)
    return out


def providers(s: dict, cfg: dict) -> tuple[dict, dict]:
    """(training-step providers, pipeline providers); each a name -> zero-argument callable."""
    from ..contrastive.pipeline import GroupCollator
    from ..contrastive.trainer import Trainer

    collate = GroupCollator(s["tokenizer"].pad_token_id)
    items = {k: [ds[i] for i in range(cfg["batch"])] for k, ds in s["datasets"].items()}
    batches = {k: collate(it) for k, it in items.items()}
    mle = Trainer(s["model"], None, max_alpha=0.0, progress=False)
    steps = {MLE: lambda: mle.step(batches[cfg["ks"][0]])}
    # the anchor's rows have distinct contexts, so it runs the single forward; this row checks that the
    # context-then-response path would not have made the anchor faster
    two_pass = Trainer(s["model"], None, max_alpha=0.0, progress=False, share_context=True)
    steps["MLE step, context then response (anchor check)"] = lambda: two_pass.step(batches[cfg["ks"][0]])
    for k, batch in batches.items():
        con = Trainer(s["model"], s["ref"], anneal_steps=0, max_alpha=0.5, progress=False)
        steps[f"contrastive step, K={4 * k}"] = lambda con=con, batch=batch: con.step(batch)
        unshared = Trainer(s["model"], s["ref"], anneal_steps=0, max_alpha=0.5, progress=False, share_context=False)
        steps[f"ablation: contexts not shared, K={4 * k}"] = lambda unshared=unshared, batch=batch: unshared.step(batch)
        cached = Trainer(s["model"], s["ref"], anneal_steps=0, max_alpha=0.5, progress=False, cache_reference=True)
        steps[f"contrastive step, reference cached, K={4 * k}"] = lambda cached=cached, batch=batch: cached.step(batch)
        every_row = {**batch, "num_observed": batch["context_ids"].shape[0]}  # NLL on all rows, no reference
        steps[f"ablation: all {batch['context_ids'].shape[0]} rows, no reference, K={4 * k}"] = \
            lambda every_row=every_row: mle.step(every_row)
    pipeline = {f"collate one batch, K={4 * k}": (lambda it=it: collate(it)) for k, it in items.items()}
    return steps, pipeline


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or "cpu"
    cfg = QUICK if quick else FULL
    repeats = repeats or cfg["repeats"]
    s = setup(cfg, device)
    steps, pipeline = providers(s, cfg)
    with tqdm(total=2, desc="bench contrastive", unit="group") as bar:
        t_steps = time_providers(steps, device, repeats)
        bar.update(1)
        t_pipe = time_providers(pipeline, device, repeats)
        bar.update(1)
    rows = []
    print(f"\ncontrastive step vs MLE step (batch {cfg['batch']} observed pairs, tiny GPT-2 {cfg['n_embd']}-dim "
          f"{cfg['n_layer']} layers; cost = provider median / MLE median, spread p25-p75 of paired repeats)")
    for name, t in t_steps.items():
        r = ratio(t_steps[MLE], t, MLE)  # anchor / provider: the inverse is the cost in MLE steps
        cost, lo, hi = 1 / r.value, 1 / r.p75, 1 / r.p25
        k_total = int(name.rsplit("K=", 1)[1]) if "K=" in name else 0
        row = {"provider": name, **t.to_dict("ms"), "cost_in_mle_steps": cost, "cost_p25": lo, "cost_p75": hi,
               "vs_mle": r.to_dict()}
        if name.startswith("contrastive") or name.startswith("ablation: contexts not shared"):
            row["target_max_cost"] = k_total + 2
            row["meets_target"] = cost <= k_total + 2
        rows.append(row)
        target = f"  target <= {k_total + 2}: {'met' if row.get('meets_target') else 'NOT met'}" \
            if "target_max_cost" in row else ""
        print(f"  {name:<48} {t.median * 1e3:9.1f} ms  {cost:6.2f}x MLE ({lo:.2f}-{hi:.2f}){target}")
    step_by_k = {int(n.rsplit("K=", 1)[1]): t_steps[n].median for n in t_steps
                 if n.startswith("contrastive step, K=")}
    print("data pipeline (precomputed groups; one DataLoader worker's work per batch)")
    for name, t in t_pipe.items():
        k_total = int(name.rsplit("K=", 1)[1])
        per_s = 1 / t.median
        rows.append({"provider": name, **t.to_dict("ms"), "batches_per_s": per_s,
                     "pairs_per_s": per_s * cfg["batch"] * (1 + k_total),
                     "collate_over_step": t.median / step_by_k[k_total]})
        print(f"  {name:<48} {t.median * 1e3:9.2f} ms  {per_s:8.1f} batches/s  "
              f"({100 * t.median / step_by_k[k_total]:.1f}% of a contrastive step)")
    for k, sec in s["sampling_seconds"].items():
        print(f"  group sampling once (BM25 + matching, {len(s['train'])} pairs, k={k} per side): {sec:.2f} s")
    if not quick:
        from ..contrastive.matching import MiniLMEmbedder

        emb = MiniLMEmbedder()
        texts = [p.response for p in s["train"][:256]]
        start = time.perf_counter()
        emb(texts)
        mini = len(texts) / (time.perf_counter() - start)
        print(f"  MiniLM embedding (once per distinct text): {mini:.0f} texts/s")
        rows.append({"provider": "MiniLM embedding", "texts_per_s": mini})
    load = machine().get("load_average_1_5_15min")
    print(runner_note("contrastive", quick) + (f"; load average (1/5/15 min) {load}" if load else ""))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"contrastive-{device_tag(device)}{'-quick' if quick else ''}.json")
    with open(path, "w") as fh:
        json.dump({"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                   "repeats": repeats, "rows": rows, "sampling_seconds": s["sampling_seconds"],
                   "machine": machine(), "runner": runner_note("contrastive", quick)}, fh, indent=1)
    print(f"wrote {path}")
    return rows
