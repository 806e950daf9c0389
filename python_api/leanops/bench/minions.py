"""Minions engine benchmark, in one process on the same prompts and models (the GPT-2 LLM and three
distilled SSMs trained on the Python stdlib by ``python -m leanops.minions.train_demo_models``), greedy:

* plain greedy decoding of the LLM (HF ``generate``);
* HF assisted generation (``generate(assistant_model=...)``) with each single SSM: the anchor;
* our engine with one SSM; with three SSMs and the vote; + adaptive length; + pipeline (always, and
  "auto": overlap only where measured faster); + the lean runner for the LLM too (the ablation);

at batch 1 (prompts one after another) and batch 8 (HF assisted generation refuses batch > 1: the error is
recorded). Tokens/s (median over interleaved repeats, with p25-p75), LLM forward passes per token
(counted by a forward hook), acceptance, and whether the output equals the LLM's plain greedy output.

Timing: the first call of every row is untimed (warm-up; passes, acceptance and exactness are read from it),
then ``timing.time_providers`` runs all rows of one batch size interleaved. After every timed call each
engine's drafting thread is let go (untimed): a live second OpenMP thread slows the calling thread's passes,
so one engine's thread must not slow the next row.
"""
from __future__ import annotations

import json
import os

import torch

from .timing import device_tag, machine, ratio, runner_note, time_providers


class _PassCounter:
    """Counts forward calls of a module (one call = one LLM pass)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def _row(name, batch, timing, new_tokens, passes, exact, acceptance=None, extra=None):
    return {"method": name, "batch": batch, **timing.to_dict("s"), "tokens": new_tokens,
            "tokens_per_s": new_tokens / timing.median, "tokens_per_s_p25": new_tokens / timing.p75,
            "tokens_per_s_p75": new_tokens / timing.p25, "llm_passes_per_token": passes / max(new_tokens, 1),
            "exact_greedy": exact, "acceptance": acceptance, **(extra or {})}


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
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
    repeats = repeats or (2 if quick else 5)
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

    def hf_greedy(x):
        return llm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False, pad_token_id=0)

    def hf_assisted(ssm):
        return lambda x: llm.generate(x, attention_mask=torch.ones_like(x), assistant_model=ssm,
                                      max_new_tokens=new, do_sample=False, pad_token_id=0)

    best_ssm = max(range(len(ssms)), key=lambda i: report["acceptance"][f"ssm{i}"])
    engine_cfgs = {
        f"leanops Minions, 1 SSM (ssm{best_ssm}), gamma 4": dict(models=[ssms[best_ssm]], adaptive=False),
        f"leanops Minions, 1 SSM (ssm{best_ssm}), adaptive": dict(models=[ssms[best_ssm]], adaptive=True),
        "leanops Minions, 3 SSMs + vote, gamma 4": dict(models=ssms, adaptive=False),
        "+ adaptive length": dict(models=ssms, adaptive=True),
        "+ pipeline (always overlap)": dict(models=ssms, adaptive=True, pipeline=True),
        "+ pipeline (auto: overlap where faster)": dict(models=ssms, adaptive=True, pipeline="auto"),
        "+ lean LLM runner, addmm weights": dict(models=ssms, adaptive=True, pipeline="auto", lean_llm=True,
                                                 packed=False),
        FULL_CONFIG: dict(models=ssms, adaptive=True, pipeline="auto", lean_llm=True),
    }

    def providers(batch):
        """name -> (fn, engine or None) for one batch size; batch 1 decodes the prompts one by one."""
        def shaped(fn):
            return per_prompt(fn) if batch == 1 else (lambda: fn(prompts))

        out = {HF_GREEDY: (shaped(hf_greedy), None),
               LEAN_GREEDY: (shaped(lambda x: lean_gpt2.greedy(llm, x, new)), None)}
        if batch == 1:
            out.update({f"HF assisted, ssm{i}": (shaped(hf_assisted(m)), None) for i, m in enumerate(ssms)})
        else:
            out["HF assisted"] = (shaped(hf_assisted(ssms[best_ssm])), None)
        for name, cfg in engine_cfgs.items():
            engine = Minions(llm, cfg["models"], gamma=4, adaptive=cfg["adaptive"], pipeline=cfg.get("pipeline", False),
                             lean_llm=cfg.get("lean_llm", False), packed_weights=cfg.get("packed", True))
            out[name] = (shaped(lambda x, e=engine: e.generate(x, max_new_tokens=new)), engine)
        return out

    timings_by_batch = {}
    with torch.no_grad():
        for batch in (1, 8):
            provs = providers(batch)
            engines = [e for _, e in provs.values() if e is not None]

            def let_threads_go(_name, engines=engines):
                for e in engines:  # untimed: no engine's drafting thread outlives its own call
                    e._drop_worker()

            first = {}
            for name, (fn, engine) in tqdm(provs.items(), desc=f"minions bench, batch {batch}: warm-up"):
                counter.calls = 0
                before = engine.llm_passes_total if engine is not None else 0
                try:
                    out = fn()
                except Exception as err:  # noqa: BLE001 - HF assisted refuses batch > 1: recorded, the finding
                    first[name] = {"error": f"{type(err).__name__}: {err}"}
                    continue
                let_threads_go(name)
                # our engine counts its own passes (its lean LLM runner does not call the HF module)
                passes = engine.llm_passes_total - before if engine is not None else counter.calls
                if name == LEAN_GREEDY:  # the lean runner bypasses the hook: one pass per decoding step
                    passes = new * (n_prompts if batch == 1 else 1)
                first[name] = {"passes": passes, "exact": bool(torch.equal(out[:, prompt_len:], greedy[:, prompt_len:])),
                               "engine": engine}
                if engine is not None:
                    s = engine.stats
                    first[name]["acceptance"] = s.acceptance()
                    first[name]["extra"] = {"mean_length": sum(s.chosen_lengths) / max(len(s.chosen_lengths), 1),
                                            "weights": s.weights, "pipelined_drafts": s.pipelined_drafts}
            timed = {name: fn for name, (fn, _) in provs.items() if "error" not in first[name]}
            print(f"minions bench, batch {batch}: {len(timed)} rows x {repeats} interleaved repeats", flush=True)
            timings = time_providers(timed, device, repeats, warmup=0, keep_result=True, after_each=let_threads_go)
            timings_by_batch[batch] = timings
            for name in provs:
                f = first[name]
                if "error" in f:
                    rows.append({"method": name, "batch": batch, "error": f["error"]})
                    continue
                t = timings[name]
                exact = f["exact"] and bool(torch.equal(t.last_result[:, prompt_len:], greedy[:, prompt_len:]))
                rows.append(_row(name, batch, t, n_prompts * new, f["passes"], exact, f.get("acceptance"),
                                 f.get("extra")))
    counter.handle.remove()

    summary = _summary(timings_by_batch[1], timings_by_batch[8])
    result = {"family": "minions", "device": device_tag(device), "machine": machine(),
              "runner": runner_note("minions", quick), "models": mode, "prompts": n_prompts,
              "prompt_tokens": prompt_len, "new_tokens": new, "repeats": repeats,
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


HF_GREEDY = "HF greedy (no speculation)"
LEAN_GREEDY = "leanops greedy, lean prepacked runner (no speculation)"
FULL_CONFIG = "+ lean LLM runner, prepacked weights (all)"


def _summary(b1, b8):
    """Ratios of the full configuration (named before the run, not the fastest row picked after it) against
    each anchor, per batch size: tokens/s ratio = anchor time / ours, spread from the paired repeats."""
    out = {"full_minions": FULL_CONFIG}
    assisted = [name for name in b1 if name.startswith("HF assisted")]
    # the strongest anchor: the HF assisted SSM with the lowest median time
    best = min(assisted, key=lambda name: b1[name].median)
    out["best_hf_assisted_b1"] = best
    for key, timings in (("b1", b1), ("b8", b8)):
        for anchor_key, anchor in (("hf_greedy", HF_GREEDY), ("lean_greedy", LEAN_GREEDY)):
            out[f"full_vs_{anchor_key}_{key}"] = ratio(timings[anchor], timings[FULL_CONFIG], anchor).to_dict()
    out["full_vs_best_hf_assisted_b1"] = ratio(b1[best], b1[FULL_CONFIG], best).to_dict()
    return out


def _print(result):
    print(f"\nMinions, {result['device']}, models: {result['models']}, {result['prompts']} prompts x "
          f"{result['new_tokens']} new tokens, greedy, {result['repeats']} interleaved repeats per row")
    print(f"{'method':54s} {'B':>2s} {'tok/s':>8s} {'p25-p75':>13s} {'passes/tok':>10s} {'exact':>5s}  acceptance")
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['method']:54s} {r['batch']:2d}  refused: {r['error'][:80]}")
            continue
        acc = "" if r["acceptance"] is None else " ".join(f"{a:.2f}" for a in r["acceptance"])
        print(f"{r['method']:54s} {r['batch']:2d} {r['tokens_per_s']:8.1f} {r['tokens_per_s_p25']:6.1f}-"
              f"{r['tokens_per_s_p75']:<6.1f} {r['llm_passes_per_token']:10.3f} {str(r['exact_greedy']):>5s}  {acc}")
    s = result["summary"]

    def fmt(key):
        r = s[key]
        return f"{r['ratio']:.2f}x ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}) {r['anchor']}"

    print(f"full Minions ({s['full_minions'][2:]}: 3 SSMs, vote, adaptive length, pipeline auto), ratio = anchor "
          f"median time / ours (spread: p25-p75 of paired repeats):")
    print(f"  batch 1: {fmt('full_vs_best_hf_assisted_b1')} (the fastest HF assisted row, the strongest anchor); "
          f"{fmt('full_vs_hf_greedy_b1')}; {fmt('full_vs_lean_greedy_b1')}")
    print(f"  batch 8: {fmt('full_vs_hf_greedy_b8')}; {fmt('full_vs_lean_greedy_b8')}")
    print(f"runner: {result['runner']} on {result['device']}")


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
