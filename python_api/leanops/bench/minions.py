"""Minions engine benchmark: configurations compared only on the same LLM runner, in one process, on the
same prompts and models (the GPT-2 LLM and three SSMs distilled on different halves of the Python stdlib by
``python -m leanops.minions.train_demo_models``), greedy, at batch 1 (prompts one after another) and batch 8.

* **HF runner** (the LLM runs as the HF module with its own KV cache): plain greedy (HF ``generate``);
  HF assisted generation with each SSM (refuses batch > 1: the error is recorded); Minions with the one SSM
  of the highest distillation acceptance; Minions default (``lean_llm=False``).
* **lean runner** (the LLM on ``lean_gpt2``'s prepacked runner): plain greedy; single-SSM speculative
  decoding with each SSM, fixed gamma 4 and adaptive; the vote of all three at fixed gamma 4; Minions
  default (``lean_llm=True``); and the default with each mechanism toggled in turn (ablation).

Every row's ``llm_passes_per_token`` is counted during its warm-up call (a forward hook on the HF module and
a counting wrapper around the lean runner's ``feed`` of the LLM), never written in. Timing: the first call
of every row is untimed (warm-up; passes, plans, acceptance and exactness are read from it), then
``timing.time_providers`` runs all rows of one batch size interleaved; tokens/s is the median over
repeats with p25-p75; ratios are anchor median time / ours with the p25-p75 of paired repeats. After
every timed call each engine's drafting thread is let go (untimed): a live second OpenMP thread slows the
calling thread's passes. The "best" anchors (best single-SSM row, best fixed row) are the fastest medians
of their group, which can only favour the anchor.

The vote's headroom is measured untimed: with every SSM drafting every round (gamma 4), kept tokens per
row and round of each SSM, of an oracle picking the best SSM per row and round, and of the vote, and per
prompt how often the best SSM is not the overall best.
"""
from __future__ import annotations

import contextlib
import json
import os

import torch

from .timing import device_tag, machine, ratio, runner_note, time_providers

HF_GREEDY = "HF runner: plain greedy (HF generate)"
HF_DEFAULT = "HF runner: Minions default"
LEAN_GREEDY = "lean runner: plain greedy"
LEAN_DEFAULT = "lean runner: Minions default"
VOTE_FIXED = "lean runner: 3 SSMs + vote, gamma 4"
# the default with one mechanism changed: (row name, Minions keyword arguments)
ABLATIONS = [
    ("  default, drafter selection off (always all 3 + vote)", dict(select_drafters=False)),
    ("  default, adaptive length off (gamma 4)", dict(adaptive=False)),
    ("  default, plain-step fallback off (min_gamma 1)", dict(min_gamma=1)),
    ("  default, vote weights off (equal: weight_floor 1)", dict(weight_floor=1.0)),
    ("  default, scoring of SSMs sitting out off (score_every 0)", dict(score_every=0)),
    ("  default, + pipeline auto (overlap where faster)", dict(pipeline="auto")),
    ("  default, prepacked weights off (addmm)", dict(packed_weights=False)),
]


def _single(i, adaptive):
    return f"lean runner: 1 SSM (ssm{i}), " + ("adaptive" if adaptive else "gamma 4")


class _PassCounter:
    """Counts LLM passes: forward calls of the HF module, and ``feed`` calls of lean runners built on it."""

    def __init__(self, model):
        from ..minions import lean_gpt2

        self.calls, self.wte = 0, model.transformer.wte.weight
        self.handle = model.register_forward_hook(self._hook)
        self._cls, self._feed = lean_gpt2.LeanGPT2Runner, lean_gpt2.LeanGPT2Runner.feed

    def _hook(self, *_):
        self.calls += 1

    @contextlib.contextmanager
    def lean(self):
        """While open, the lean runner's passes over this model count too."""
        feed, counter = self._feed, self

        def counting(runner, tokens, valid):
            if runner.wte is counter.wte:
                counter.calls += 1
            return feed(runner, tokens, valid)
        self._cls.feed = counting
        try:
            yield
        finally:
            self._cls.feed = feed


def _row(name, batch, timing, new_tokens, passes, exact, extra):
    return {"method": name, "batch": batch, **timing.to_dict("s"), "tokens": new_tokens,
            "tokens_per_s": new_tokens / timing.median, "tokens_per_s_p25": new_tokens / timing.p75,
            "tokens_per_s_p75": new_tokens / timing.p25, "llm_passes_per_token": passes / max(new_tokens, 1),
            "exact_greedy": exact, **extra}


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    from ..minions import Minions, lean_gpt2
    from ..minions.demo_models import held_out_prompts, load_first

    device = "cpu" if device is None else device
    mode, (llm, ssms, tok, report) = load_first(("tiny",) if quick else ("full", "quick"),
                                                train="tiny" if quick else "quick")
    for m in [llm, *ssms]:
        m.to(device)
        m.generation_config.eos_token_id = None  # every method decodes exactly max_new_tokens
    n_prompts, new = (2, 12) if quick else (8, 96)
    prompt_len = min(32, llm.config.n_positions // 4)
    prompts = held_out_prompts(tok, n_prompts, prompt_len, seed=2).to(device)
    repeats = repeats or (2 if quick else 5)
    counter = _PassCounter(llm)
    best_ssm = max(range(len(ssms)), key=lambda i: report["acceptance"][f"ssm{i}"])

    with torch.no_grad():
        greedy = llm.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new,
                              do_sample=False, pad_token_id=0)

    def hf_greedy(x):
        return llm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False, pad_token_id=0)

    def hf_assisted(ssm):
        return lambda x: llm.generate(x, attention_mask=torch.ones_like(x), assistant_model=ssm,
                                      max_new_tokens=new, do_sample=False, pad_token_id=0)

    engine_rows = {f"HF runner: Minions, 1 SSM (ssm{best_ssm})": ([ssms[best_ssm]], dict(lean_llm=False)),
                   HF_DEFAULT: (ssms, dict(lean_llm=False))}
    for i, m in enumerate(ssms):
        engine_rows[_single(i, False)] = ([m], dict(lean_llm=True, adaptive=False))
    for i, m in enumerate(ssms):
        engine_rows[_single(i, True)] = ([m], dict(lean_llm=True))
    engine_rows[VOTE_FIXED] = (ssms, dict(lean_llm=True, adaptive=False, select_drafters=False))
    engine_rows[LEAN_DEFAULT] = (ssms, dict(lean_llm=True))
    for name, change in ABLATIONS:
        engine_rows[name] = (ssms, dict(lean_llm=True, **change))

    def providers(batch):
        """name -> (fn, engine or None) for one batch size; batch 1 decodes the prompts one by one."""
        def shaped(fn):
            if batch == 1:
                return lambda: torch.cat([fn(prompts[i: i + 1]) for i in range(n_prompts)])
            return lambda: fn(prompts)

        def engine(name):
            models, kw = engine_rows[name]
            e = Minions(llm, models, **kw)
            return shaped(lambda x: e.generate(x, max_new_tokens=new)), e

        out = {HF_GREEDY: (shaped(hf_greedy), None)}
        out.update({f"HF runner: HF assisted, ssm{i}": (shaped(hf_assisted(m)), None) for i, m in enumerate(ssms)})
        hf_engines = [n for n in engine_rows if n.startswith("HF runner")]
        out.update({n: engine(n) for n in hf_engines})
        out[LEAN_GREEDY] = (shaped(lambda x: lean_gpt2.greedy(llm, x, new)), None)
        out.update({n: engine(n) for n in engine_rows if n not in hf_engines})
        return out

    rows, timings_by_batch = [], {}
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
                try:
                    with counter.lean():
                        out = fn()
                except Exception as err:  # noqa: BLE001 - HF assisted refuses batch > 1: recorded, the finding
                    first[name] = {"error": f"{type(err).__name__}: {err}"}
                    continue
                let_threads_go(name)
                exact = bool(torch.equal(out[:, prompt_len:], greedy[:, prompt_len:]))
                extra = {}
                if engine is not None:
                    s = engine.stats  # the last prompt's generate() call at batch 1 (each call starts afresh)
                    extra = {"acceptance": s.acceptance(), "plans_last_call": dict(s.plans),
                             "mean_length_last_call": sum(s.chosen_lengths) / max(len(s.chosen_lengths), 1),
                             "weights_last_call": s.weights}
                first[name] = {"passes": counter.calls, "exact": exact, "extra": extra}
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
                rows.append(_row(name, batch, t, n_prompts * new, f["passes"], exact, f["extra"]))
        headroom = _headroom(Minions(llm, ssms, lean_llm=True, adaptive=False, select_drafters=False), prompts, new)
    counter.handle.remove()

    summary = _summary(timings_by_batch, len(ssms))
    result = {"family": "minions", "device": device_tag(device), "machine": machine(),
              "runner": runner_note("minions", quick), "models": mode, "prompts": n_prompts,
              "prompt_tokens": prompt_len, "new_tokens": new, "repeats": repeats,
              "data": "held-out Python stdlib files (never trained on)", "training_report": report,
              "rows": rows, "summary": summary, "headroom": headroom}
    _print(result)
    if not quick:
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(out_dir, f"minions-{device_tag(device)}")
        with open(base + ".json", "w") as f:
            json.dump(result, f, indent=2)
        _plot(rows, base + ".png")
        print(f"wrote {base}.json and {base}.png")
    return result


def _headroom(engine, prompts, new):
    """Untimed: every SSM drafts every round (gamma 4), per prompt at batch 1. Kept tokens per row and round
    of each SSM alone, of the best SSM per row and round (oracle, with hindsight) and of the vote; and how
    often the best SSM of a prompt is not the best SSM overall."""
    per_prompt, k = [], len(engine.ssms)
    rows = best_kept = vote_kept = 0
    kept = [0] * k
    for i in range(prompts.shape[0]):
        engine.generate(prompts[i: i + 1], max_new_tokens=new)
        s = engine.stats
        per_prompt.append(s.all_drafted_agree)
        rows, best_kept, vote_kept = rows + s.all_drafted_rows, best_kept + s.all_drafted_best, vote_kept + s.all_drafted_vote
        kept = [a + b for a, b in zip(kept, s.all_drafted_agree)]
    n = max(rows, 1)
    per_ssm = [a / n for a in kept]
    best = max(range(k), key=lambda j: per_ssm[j])
    differs = sum(max(range(k), key=lambda j: p[j]) != best for p in per_prompt)
    return {"rounds": rows, "kept_per_round_per_ssm": per_ssm, "kept_per_round_oracle": best_kept / n,
            "kept_per_round_vote": vote_kept / n, "best_ssm": best,
            "prompts_whose_best_ssm_differs": differs, "prompts": len(per_prompt),
            "oracle_gain_over_best_ssm": best_kept / n / max(per_ssm[best], 1e-9),
            "vote_gain_over_best_ssm": vote_kept / n / max(per_ssm[best], 1e-9)}


def _fastest(timings, names):
    return min((n for n in names if n in timings), key=lambda n: timings[n].median)


def _summary(by_batch, k):
    """Ratios of Minions default (named before the run) against each anchor on the same runner, per batch
    size, and the issue's targets checked against them."""
    out = {}
    singles = [_single(i, a) for a in (False, True) for i in range(k)]
    fixed = [LEAN_GREEDY, VOTE_FIXED] + [_single(i, False) for i in range(k)]
    for batch, t in by_batch.items():
        key = f"b{batch}"
        best_single, best_fixed = _fastest(t, singles), _fastest(t, fixed)
        out[key] = {
            "lean_default_vs_lean_greedy": ratio(t[LEAN_GREEDY], t[LEAN_DEFAULT], LEAN_GREEDY).to_dict(),
            "lean_default_vs_best_single_ssm": ratio(t[best_single], t[LEAN_DEFAULT], best_single).to_dict(),
            "lean_default_vs_best_fixed": ratio(t[best_fixed], t[LEAN_DEFAULT], best_fixed).to_dict(),
            "hf_default_vs_hf_greedy": ratio(t[HF_GREEDY], t[HF_DEFAULT], HF_GREEDY).to_dict(),
        }
        assisted = [n for n in t if n.startswith("HF runner: HF assisted")]
        if assisted:
            best = _fastest(t, assisted)
            out[key]["hf_default_vs_best_hf_assisted"] = ratio(t[best], t[HF_DEFAULT], best).to_dict()
            out[key]["lean_default_vs_best_hf_assisted"] = ratio(t[best], t[LEAN_DEFAULT], best).to_dict()
    out["targets"] = {
        "default >= 0.97x best fixed, batch 1": out["b1"]["lean_default_vs_best_fixed"]["ratio"] >= 0.97,
        "default >= 0.97x best fixed, batch 8": out["b8"]["lean_default_vs_best_fixed"]["ratio"] >= 0.97,
        "default >= 1.3x best single-SSM, batch 1": out["b1"]["lean_default_vs_best_single_ssm"]["ratio"] >= 1.3,
        "default >= plain greedy, batch 8": out["b8"]["lean_default_vs_lean_greedy"]["ratio"] >= 1.0,
    }
    return out


def _print(result):
    print(f"\nMinions, {result['device']}, models: {result['models']}, {result['prompts']} prompts x "
          f"{result['new_tokens']} new tokens, greedy, {result['repeats']} interleaved repeats per row")
    print(f"{'method':56s} {'B':>2s} {'tok/s':>7s} {'p25-p75':>13s} {'passes/tok':>10s} {'exact':>5s}  plans (last call)")
    for r in result["rows"]:
        if "error" in r:
            print(f"{r['method']:56s} {r['batch']:2d}  refused: {r['error'][:70]}")
            continue
        plans = " ".join(f"{k}:{v}" for k, v in r.get("plans_last_call", {}).items())
        print(f"{r['method']:56s} {r['batch']:2d} {r['tokens_per_s']:7.1f} {r['tokens_per_s_p25']:6.1f}-"
              f"{r['tokens_per_s_p75']:<6.1f} {r['llm_passes_per_token']:10.3f} {str(r['exact_greedy']):>5s}  {plans}")

    def fmt(r):
        return f"{r['ratio']:.2f}x ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}) vs {r['anchor']}"

    s = result["summary"]
    print("ratio = anchor median time / ours, spread p25-p75 of paired repeats:")
    for key in ("b1", "b8"):
        for name, r in s[key].items():
            print(f"  batch {key[1:]}, {name}: {fmt(r)}")
    for target, held in s["targets"].items():
        print(f"  target {target}: {'met' if held else 'NOT met'}")
    h = result["headroom"]
    print(f"vote headroom (every SSM drafts every round, gamma 4, {h['rounds']} row-rounds): kept tokens per "
          f"round per SSM {' '.join(f'{a:.2f}' for a in h['kept_per_round_per_ssm'])}, oracle "
          f"{h['kept_per_round_oracle']:.2f} ({h['oracle_gain_over_best_ssm']:.2f}x the best SSM), vote "
          f"{h['kept_per_round_vote']:.2f} ({h['vote_gain_over_best_ssm']:.2f}x); the best SSM of a prompt is not "
          f"ssm{h['best_ssm']} on {h['prompts_whose_best_ssm_differs']}/{h['prompts']} prompts")
    print(f"runner: {result['runner']} on {result['device']}")


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 7))
    for ax, batch in zip(axes, (1, 8)):
        sel = [r for r in rows if r["batch"] == batch and "error" not in r]
        mid = [r["tokens_per_s"] for r in sel]
        err = [[max(m - r["tokens_per_s_p25"], 0) for m, r in zip(mid, sel)],
               [max(r["tokens_per_s_p75"] - m, 0) for m, r in zip(mid, sel)]]
        ax.barh([r["method"] for r in sel], mid, xerr=err,
                color=["tab:gray" if r["method"].startswith("HF runner") else
                       "tab:olive" if "plain greedy" in r["method"] else
                       "tab:blue" if "default" in r["method"] else "tab:cyan" for r in sel])
        ax.invert_yaxis()
        ax.set_xlabel("tokens / s (median, p25-p75)")
        ax.set_title(f"batch {batch}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
