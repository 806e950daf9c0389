"""Minions engine benchmark, in one process on the same prompts and models (the GPT-2 LLM and three
distilled SSMs trained on the Python stdlib by ``python -m leanops.minions.train_demo_models``), greedy:

* plain greedy decoding of the LLM (HF ``generate``);
* HF assisted generation (``generate(assistant_model=...)``) with each single SSM: the anchor;
* our engine with one SSM; with three SSMs and the vote; + adaptive length; + pipeline (always, and
  "auto": overlap only where measured faster); + the lean runner for the LLM too (the ablation);

at batch 1 (prompts one after another) and batch 8 (HF assisted generation refuses batch > 1: the error is
recorded). Tokens/s, LLM forward passes per token (counted by a forward hook), acceptance, and whether the
output equals the LLM's plain greedy output.
"""
from __future__ import annotations

import json
import os
import time

import torch

from .timing import device_tag, machine


class _PassCounter:
    """Counts forward calls of a module (one call = one LLM pass)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def _timed(fn, repeats: int):
    """(best wall seconds, last result) over ``repeats`` runs after one warm-up run."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _row(name, batch, seconds, new_tokens, passes, exact, acceptance=None, extra=None):
    return {"method": name, "batch": batch, "seconds": seconds, "tokens": new_tokens,
            "tokens_per_s": new_tokens / seconds, "llm_passes_per_token": passes / max(new_tokens, 1),
            "exact_greedy": exact, "acceptance": acceptance, **(extra or {})}


def run(device=None, quick=False, out_dir="benchmarks/results"):
    from tqdm import tqdm

    from ..minions import Minions, lean_gpt2
    from ..minions.demo_models import held_out_prompts, load_first

    device = "cpu" if device is None else device
    mode, (llm, ssms, tok, report) = load_first(("tiny",) if quick else ("full", "quick"),
                                                train="tiny" if quick else "quick")
    llm.to(device)
    for m in ssms:
        m.to(device)
    llm.generation_config.eos_token_id = None  # every method decodes exactly max_new_tokens
    for m in ssms:
        m.generation_config.eos_token_id = None
    n_prompts, new = (2, 12) if quick else (8, 96)
    prompt_len = min(32, llm.config.n_positions // 4)
    prompts = held_out_prompts(tok, n_prompts, prompt_len, seed=2).to(device)
    repeats = 1 if quick else 2
    counter = _PassCounter(llm)
    rows = []

    with torch.no_grad():
        greedy = llm.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new,
                              do_sample=False, pad_token_id=0)

    def per_prompt(fn):
        """Batch 1: decode the prompts one after another; returns the outputs stacked."""
        def go():
            return torch.cat([fn(prompts[i: i + 1]) for i in range(n_prompts)])
        return go

    def measure(name, fn, batch, engine=None):
        counter.calls = 0
        before = engine.llm_passes_total if engine is not None else 0
        seconds, out = _timed(fn, repeats)
        # our engine counts its own passes (its lean LLM runner does not call the HF module)
        passes = (engine.llm_passes_total - before if engine is not None else counter.calls) / (repeats + 1)
        exact = bool(torch.equal(out[:, prompt_len:], greedy[:, prompt_len:]))
        acc, extra = None, None
        if engine is not None:
            s = engine.stats
            acc = s.acceptance()
            extra = {"mean_length": sum(s.chosen_lengths) / max(len(s.chosen_lengths), 1),
                     "weights": s.weights, "pipelined_drafts": s.pipelined_drafts}
        rows.append(_row(name, batch, seconds, n_prompts * new, passes, exact, acc, extra))

    def hf_greedy(x):
        return llm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False, pad_token_id=0)

    def hf_assisted(ssm):
        return lambda x: llm.generate(x, attention_mask=torch.ones_like(x), assistant_model=ssm,
                                      max_new_tokens=new, do_sample=False, pad_token_id=0)

    best_ssm = max(range(len(ssms)), key=lambda i: report["acceptance"][f"ssm{i}"])
    engines = {
        f"leanops Minions, 1 SSM (ssm{best_ssm}), gamma 4": dict(models=[ssms[best_ssm]], adaptive=False),
        f"leanops Minions, 1 SSM (ssm{best_ssm}), adaptive": dict(models=[ssms[best_ssm]], adaptive=True),
        "leanops Minions, 3 SSMs + vote, gamma 4": dict(models=ssms, adaptive=False),
        "+ adaptive length": dict(models=ssms, adaptive=True),
        "+ pipeline (always overlap)": dict(models=ssms, adaptive=True, pipeline=True),
        "+ pipeline (auto: overlap where faster)": dict(models=ssms, adaptive=True, pipeline="auto"),
        "+ lean LLM runner, addmm weights": dict(models=ssms, adaptive=True, pipeline="auto", lean_llm=True,
                                                 packed=False),
        "+ lean LLM runner, prepacked weights (all)": dict(models=ssms, adaptive=True, pipeline="auto", lean_llm=True),
    }
    lean_greedy = "leanops greedy, lean prepacked runner (no speculation)"
    plan = [("HF greedy (no speculation)", 1), (lean_greedy, 1)] + [(f"HF assisted, ssm{i}", 1) for i in range(len(ssms))] + \
        [(k, 1) for k in engines] + [("HF greedy (no speculation)", 8), (lean_greedy, 8), ("HF assisted", 8)] + \
        [(k, 8) for k in engines]
    with torch.no_grad():
        for name, batch in tqdm(plan, desc="minions bench"):
            if name.startswith("HF greedy"):
                measure(name, per_prompt(hf_greedy) if batch == 1 else (lambda: hf_greedy(prompts)), batch)
            elif name == lean_greedy:  # the runner alone: what speculation adds on top of it
                measure(name, per_prompt(lambda x: lean_gpt2.greedy(llm, x, new)) if batch == 1 else
                        (lambda: lean_gpt2.greedy(llm, prompts, new)), batch)
                rows[-1]["llm_passes_per_token"] = 1.0 if batch == 1 else 1.0 / n_prompts  # one pass per step
            elif name.startswith("HF assisted") and batch == 1:
                measure(name, per_prompt(hf_assisted(ssms[int(name[-1])])), batch)
            elif name.startswith("HF assisted"):
                try:
                    hf_assisted(ssms[best_ssm])(prompts)
                    measure(name, lambda: hf_assisted(ssms[best_ssm])(prompts), batch)
                except Exception as err:  # noqa: BLE001 - recorded, this is the finding
                    rows.append({"method": name, "batch": batch, "error": f"{type(err).__name__}: {err}"})
            else:
                cfg = engines[name]
                engine = Minions(llm, cfg["models"], gamma=4, adaptive=cfg["adaptive"],
                                 pipeline=cfg.get("pipeline", False), lean_llm=cfg.get("lean_llm", False),
                                 packed_weights=cfg.get("packed", True))
                call = lambda x, e=engine: e.generate(x, max_new_tokens=new)  # noqa: E731
                measure(name, per_prompt(call) if batch == 1 else (lambda c=call: c(prompts)), batch, engine)
    counter.handle.remove()

    summary = _summary(rows)
    result = {"device": device_tag(device), "machine": machine(), "models": mode, "prompts": n_prompts,
              "prompt_tokens": prompt_len, "new_tokens": new, "repeats_best_of": repeats,
              "data": "held-out Python stdlib files (never trained on)", "training_report": report,
              "rows": rows, "summary": summary}
    _print(result)
    if not quick:
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(out_dir, f"minions-{device_tag(device)}")
        with open(base + ".json", "w") as f:
            json.dump(result, f, indent=2)
        _plot(rows, base + ".png")
        print(f"wrote {base}.json and {base}.png")
    return result


def _summary(rows):
    ok = [r for r in rows if "error" not in r]
    b1 = [r for r in ok if r["batch"] == 1]
    greedy = next(r for r in b1 if r["method"].startswith("HF greedy"))
    assisted = max((r for r in b1 if r["method"].startswith("HF assisted")), key=lambda r: r["tokens_per_s"])
    full = max((r for r in b1 if r["method"].startswith(("+ pipeline", "+ lean"))), key=lambda r: r["tokens_per_s"])
    best = max((r for r in b1 if not r["method"].startswith(("HF", "leanops greedy"))), key=lambda r: r["tokens_per_s"])
    lean = next(r for r in b1 if r["method"].startswith("leanops greedy"))
    return {"full_minions": full["method"],
            "minions_vs_lean_greedy_b1": full["tokens_per_s"] / lean["tokens_per_s"],
            "minions_vs_best_hf_assisted_b1": full["tokens_per_s"] / assisted["tokens_per_s"],
            "best_hf_assisted": assisted["method"],
            "minions_vs_plain_greedy_b1": full["tokens_per_s"] / greedy["tokens_per_s"],
            "best_leanops_config_b1": best["method"],
            "best_leanops_vs_best_hf_assisted_b1": best["tokens_per_s"] / assisted["tokens_per_s"],
            "best_leanops_vs_plain_greedy_b1": best["tokens_per_s"] / greedy["tokens_per_s"]}


def _print(result):
    print(f"\nMinions, {result['device']}, models: {result['models']}, {result['prompts']} prompts x "
          f"{result['new_tokens']} new tokens, greedy")
    print(f"{'method':54s} {'B':>2s} {'tok/s':>8s} {'passes/tok':>10s} {'exact':>5s}  acceptance")
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['method']:54s} {r['batch']:2d}  refused: {r['error'][:80]}")
            continue
        acc = "" if r["acceptance"] is None else " ".join(f"{a:.2f}" for a in r["acceptance"])
        print(f"{r['method']:54s} {r['batch']:2d} {r['tokens_per_s']:8.1f} {r['llm_passes_per_token']:10.3f} "
              f"{str(r['exact_greedy']):>5s}  {acc}")
    s = result["summary"]
    print(f"Minions (3 SSMs, vote + adaptive + pipeline; best such row: {s['full_minions'][2:]}) vs best HF assisted "
          f"({s['best_hf_assisted']}): {s['minions_vs_best_hf_assisted_b1']:.2f}x; vs plain greedy: "
          f"{s['minions_vs_plain_greedy_b1']:.2f}x; vs greedy on the same lean runner: {s['minions_vs_lean_greedy_b1']:.2f}x")
    print(f"best leanops row at batch 1 ({s['best_leanops_config_b1']}): {s['best_leanops_vs_best_hf_assisted_b1']:.2f}x "
          f"best HF assisted, {s['best_leanops_vs_plain_greedy_b1']:.2f}x plain greedy")


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, batch in zip(axes, (1, 8)):
        sel = [r for r in rows if r["batch"] == batch and "error" not in r]
        ax.barh([r["method"] for r in sel], [r["tokens_per_s"] for r in sel],
                color=["tab:gray" if r["method"].startswith("HF") else
                       "tab:olive" if r["method"].startswith("leanops greedy") else "tab:blue" for r in sel])
        ax.invert_yaxis()
        ax.set_xlabel("tokens / s")
        ax.set_title(f"batch {batch}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
