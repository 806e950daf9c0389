"""``leanops demo``: each method on real or generated data, printing what it kept and what it cost.

Every speed figure comes from ``bench.timing.time_providers`` (warm-up, then interleaved repeats) and is
printed as "ratio (p25-p75 of the paired per-repeat ratios)" against a named anchor."""
from __future__ import annotations

import copy

import torch

from .bench.timing import ratio, time_providers


def _tome_minilm(quick: bool) -> None:
    from . import tome
    from .tome import minilm

    r_values = (0, 4, 8) if quick else (0, 2, 4, 8, 16)
    print("\n== ToMe on all-MiniLM-L6-v2 (real pretrained BERT; sentences from Python stdlib docstrings)")
    tok, base = minilm.load_minilm()
    texts = minilm.stdlib_sentences(32 if quick else 64)
    batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    models = {"HF unpatched": base}
    for r in r_values:  # one copy of the weights per r, so the runs can be interleaved
        models[f"r={r}"] = tome.patch(copy.deepcopy(base), r=r)
    ref = minilm.embed(base, batch)
    timings = time_providers({name: (lambda m=m: minilm.embed(m, batch)) for name, m in models.items()},
                             repeats=3 if quick else 7)
    print(f"{len(texts)} sentences, padded to the longest (<= 128 tokens); speed: median over "
          f"{timings['HF unpatched'].n} interleaved repeats, anchor: the unpatched HF model")
    print(f"{'r':>4} {'tokens out':>11} {'cos mean':>9} {'cos min':>8} {'x HF unpatched (spread)':>24}")
    for r in r_values:
        model = models[f"r={r}"]
        cos = (minilm.embed(model, batch) * ref).sum(-1)
        sp = ratio(timings["HF unpatched"], timings[f"r={r}"], "HF unpatched")
        print(f"{r:4d} {tome.tokens_per_layer(model)[-1]:11d} {cos.mean():9.4f} {cos.min():8.4f} {str(sp):>24}")


def _tome_vit(quick: bool) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    from . import tome

    print("\n== ToMe on a random ViT (ViT-S/16-sized, random weights; image batch of noise)")
    cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                    image_size=224, patch_size=16, num_labels=10)
    torch.manual_seed(0)
    base = ViTForImageClassification(cfg).eval()
    pixels = torch.randn(4 if quick else 16, 3, 224, 224)
    r_values = (4, 8, 13)
    models = {"HF unpatched": base, **{f"r={r}": tome.patch(copy.deepcopy(base), r=r) for r in r_values}}

    def forward(model):
        with torch.inference_mode():
            return model(pixel_values=pixels).logits

    timings = time_providers({name: (lambda m=m: forward(m)) for name, m in models.items()},
                             repeats=3 if quick else 7, keep_result=True)
    logits0 = timings["HF unpatched"].last_result
    print(f"speed: median over {timings['HF unpatched'].n} interleaved repeats, anchor: the unpatched HF model")
    print(f"{'r':>4} {'tokens/layer (first..last)':>28} {'logit cos':>10} {'x HF unpatched (spread)':>24}")
    for r in r_values:
        name = f"r={r}"
        kept = tome.tokens_per_layer(models[name])
        cos = torch.nn.functional.cosine_similarity(timings[name].last_result, logits0, dim=-1).mean()
        sp = ratio(timings["HF unpatched"], timings[name], "HF unpatched")
        print(f"{r:4d} {f'{kept[0]}..{kept[-1]} (of 197)':>28} {cos:10.4f} {str(sp):>24}")


def _kfatt(quick: bool) -> None:
    from tqdm import tqdm

    from . import kfatt
    from .bench.pool import FULL, PADDED, QUICK, prepare, providers, step

    def table(data, title):
        train, test = data.split(int(0.75 * data.label.shape[0]))
        new = test.new_demand
        print(title)
        print(f"{'pooling':14} {'test AUC':>9} {'GAUC':>7} {'AUC new demand':>15} {'AUC relevant':>13}")

        def row(name, scores):
            print(f"{name:14} {kfatt.auc(scores, test.label):9.4f} {kfatt.gauc(scores, test.label, test.user):7.4f} "
                  f"{kfatt.auc(scores[new], test.label[new]):15.4f} {kfatt.auc(scores[~new], test.label[~new]):13.4f}")

        for pooling in tqdm(kfatt.POOLINGS, desc="train CTR models", leave=False):
            row(pooling, kfatt.predict(kfatt.train_model(train, pooling, epochs=4, seed=0), test))
        row("bayes optimal", test.bayes_prob)

    n = 20000 if quick else 60000
    table(kfatt.generate(n, new_demand=0.5, repeat_prob=0.6, seed=7),
          "\n== KFAtt vs DIN (CTR on data drawn from KFAtt's own model, with a known ground truth: 50% new-demand\n"
          "   queries, 60% of histories with one behaviour repeated 10-40 times; users with 4-12 impressions)")
    if quick:  # a second table would double this section's time; the experiment has it over seeds
        print("   (data drawn under DIN's assumption instead: `leanops demo` without --quick, or\n"
              "   `python -m leanops.kfatt.experiment --generator din`)")
    else:
        table(kfatt.generate_din(n, new_demand=0.5, repeat_prob=0.6, seed=7),
              "\n== the same on data drawn under DIN's assumption (click logit = attention-weighted sum of the\n"
              "   relevant behaviours' values, no prior, every repeat counts): KFAtt's assumptions do not hold")
    shape = QUICK if quick else FULL
    a = prepare(shape, "cpu", torch.float32, grad=False)
    timings = time_providers({name: (lambda fn=fn: step(fn, a, False)) for name, fn in providers("cpu").items()},
                             repeats=3 if quick else 7)
    print(f"pooling op, B={shape['b']} H={shape['h']} D={shape['d']}, {int(a['offsets'][-1])} behaviours "
          f"(max length {int(a['lengths'].max())}), forward, median of {timings[PADDED].n} interleaved repeats:")
    for name, t in timings.items():
        print(f"  {name:28} {t.median * 1e3:9.2f} ms  {str(ratio(timings[PADDED], t, PADDED)):>18} {PADDED}")


def _minions(quick: bool, modes=("full", "quick"), train="quick") -> None:
    from .minions import Minions, demo_models, lean_gpt2

    mode, (llm, ssms, tok, report) = demo_models.load_first(modes, train=train)
    llm.generation_config.eos_token_id = None
    print(f"\n== Minions on the {mode} demo models (GPT-2 LLM {report['llm']['params'] / 1e6:.1f}M params, "
          f"held-out ppl {report['llm']['held_out_ppl']:.1f}; 3 distilled SSMs; trained on the Python stdlib)")
    n, new = (4, 48) if quick else (8, 96)
    prompt_len = min(32, llm.config.n_positions // 4)
    new = min(new, llm.config.n_positions - prompt_len - 10)  # room for the longest draft (max_gamma + 1)
    prompts = demo_models.held_out_prompts(tok, n, prompt_len, seed=3)

    best = max(range(len(ssms)), key=lambda i: report["acceptance"][f"ssm{i}"])
    engine = Minions(llm, ssms, lean_llm=True)  # the default, on the lean runner
    single = Minions(llm, [ssms[best]], lean_llm=True, adaptive=False)  # one SSM, gamma 4, same runner

    def each(fn):
        return lambda: torch.cat([fn(p[None]) for p in prompts])
    fns = {"HF greedy": each(lambda x: llm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new,
                                                    do_sample=False, pad_token_id=0)),
           "lean greedy": each(lambda x: lean_gpt2.greedy(llm, x, new)),
           f"1 SSM (ssm{best})": each(lambda x: single.generate(x, max_new_tokens=new)),
           "Minions": each(lambda x: engine.generate(x, max_new_tokens=new))}
    with torch.no_grad():
        t = time_providers(fns, repeats=2 if quick else 3, keep_result=True)
        batched = engine.generate(prompts, max_new_tokens=new)
    plain, lean, ours = (t[k].last_result for k in ("HF greedy", "lean greedy", "Minions"))
    one = f"1 SSM (ssm{best})"
    print(f"{n} held-out prompts x {new} tokens, batch 1, median of {t['Minions'].n} interleaved repeats, tok/s: "
          + ", ".join(f"{k} {n * new / v.median:.1f}" for k, v in t.items()))
    print(f"on the same lean runner: Minions default {ratio(t['lean greedy'], t['Minions'], 'lean greedy')} "
          f"plain greedy, {ratio(t[one], t['Minions'], one + ' gamma 4')} one SSM with fixed gamma 4; "
          f"HF greedy on the HF runner for reference ({ratio(t['HF greedy'], t['Minions'], 'HF greedy')}, not the "
          f"same runner: `leanops bench minions` compares each runner with itself)")
    s = engine.stats
    print(f"same tokens as HF greedy: lean greedy {torch.equal(plain, lean)}, Minions {torch.equal(plain, ours)}, "
          f"Minions at batch {n} in one call {torch.equal(plain, batched)}")
    print(f"last run (batch {n}): {s.tokens_per_pass:.2f} tokens per LLM pass, acceptance per SSM "
          f"{[round(a, 2) for a in s.acceptance()]}, vote weights {[round(w, 2) for w in s.weights]}, rounds per "
          f"drafter set {dict(s.plans)}")
    generated = ours[:, prompts.shape[1]:]
    distinct = _distinct_4grams(generated)
    text = tok.decode(generated[0].tolist())
    print("prompt end: " + repr(tok.decode(prompts[0, -12:].tolist())) + "\ncontinuation: " + repr(text[:200]))
    if distinct < 0.5:
        print(f"the LLM's text is degenerate here (distinct 4-grams {distinct:.2f} of the continuations: it repeats "
              f"itself), so these speeds say nothing about real text; the {mode} models are too small for that. "
              f"`python -m leanops.minions.train_demo_models` trains the full set (about 30 CPU minutes).")
    else:
        print(f"distinct 4-grams of the continuations: {distinct:.2f} (not degenerate)")


def _distinct_4grams(ids: torch.Tensor) -> float:
    """Share of distinct token 4-grams among all 4-grams of the rows (low: the text repeats itself)."""
    grams = [tuple(row[i: i + 4].tolist()) for row in ids for i in range(row.shape[0] - 3)]
    return len(set(grams)) / max(len(grams), 1)


def method_demos() -> list[str]:
    """Method subpackages with a ``demo`` module (``leanops.<method>.demo.section(quick)``), by name."""
    import importlib.util
    import pkgutil

    import leanops

    return sorted(m.name for m in pkgutil.iter_modules(leanops.__path__)
                  if m.ispkg and importlib.util.find_spec(f"leanops.{m.name}.demo") is not None)


def run(quick: bool = False) -> None:
    import leanops

    info = leanops.build_info()
    print(f"leanops {info['version']} on torch {info['torch_version']}; backends: {', '.join(info['backends'])}; "
          f"threads: {info['threads']}")
    _tome_minilm(quick)
    _tome_vit(quick)
    _kfatt(quick)
    _minions(quick)
    import importlib

    for name in method_demos():
        importlib.import_module(f"leanops.{name}.demo").section(quick)
