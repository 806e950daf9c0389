"""``leanops demo``: each method on real or generated data, printing what it kept and what it cost."""
from __future__ import annotations

import time

import torch


def _tome_minilm(quick: bool) -> None:
    from tqdm import tqdm

    from .tome import minilm

    r_values = (0, 4, 8) if quick else (0, 2, 4, 8, 16)
    print("\n== ToMe on all-MiniLM-L6-v2 (real pretrained BERT; sentences from Python stdlib docstrings)")
    with tqdm(total=len(r_values), desc="MiniLM r sweep") as bar:
        res = minilm.fidelity_and_speed(r_values, sentences=32 if quick else 64, repeats=1 if quick else 3,
                                        progress=bar)
    print(f"{res['sentences']} sentences, padded to the longest (<= {res['max_length']} tokens)")
    print(f"{'r':>4} {'tokens out':>11} {'cos mean':>9} {'cos min':>8} {'speed-up':>9}")
    for row in res["rows"]:
        print(f"{row['r']:4d} {row['tokens_out']:11d} {row['cos_mean']:9.4f} {row['cos_min']:8.4f} "
              f"{row['speedup']:8.2f}x")


def _tome_vit(quick: bool) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    from . import tome

    print("\n== ToMe on a random ViT (ViT-S/16-sized, random weights; image batch of noise)")
    cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                    image_size=224, patch_size=16, num_labels=10)
    torch.manual_seed(0)
    model = ViTForImageClassification(cfg).eval()
    pixels = torch.randn(4 if quick else 16, 3, 224, 224)

    def timed():
        with torch.inference_mode():
            start = time.perf_counter()
            logits = model(pixel_values=pixels).logits
            return logits, time.perf_counter() - start

    timed()
    base, t_base = timed()
    print(f"{'r':>4} {'tokens/layer (first..last)':>28} {'logit cos':>10} {'speed-up':>9}")
    for r in (4, 8, 13):
        tome.patch(model, r=r)
        timed()
        logits, t = timed()
        kept = tome.tokens_per_layer(model)
        cos = torch.nn.functional.cosine_similarity(logits, base, dim=-1).mean()
        print(f"{r:4d} {f'{kept[0]}..{kept[-1]} (of 197)':>28} {cos:10.4f} {t_base / t:8.2f}x")
        tome.unpatch(model)


def _kfatt(quick: bool) -> None:
    from tqdm import tqdm

    from . import kfatt
    from .bench.pool import FULL, QUICK, prepare, providers, step
    from .bench.timing import median_seconds

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
    times = {name: median_seconds(lambda: step(fn, a, False), repeats=3) for name, fn in providers("cpu").items()}
    anchor = times["padded eager (DIN-style)"]
    print(f"pooling op, B={shape['b']} H={shape['h']} D={shape['d']}, {int(a['offsets'][-1])} behaviours "
          f"(max length {int(a['lengths'].max())}), forward:")
    for name, t in times.items():
        print(f"  {name:28} {t * 1e3:9.2f} ms  {anchor / t:6.2f}x padded")


def _minions(quick: bool) -> None:
    from .minions import Minions, demo_models, lean_gpt2

    mode, (llm, ssms, tok, report) = demo_models.load_first(train="quick")
    llm.generation_config.eos_token_id = None
    print(f"\n== Minions on the {mode} demo models (GPT-2 LLM {report['llm']['params'] / 1e6:.1f}M params, "
          f"held-out ppl {report['llm']['held_out_ppl']:.1f}; 3 distilled SSMs; trained on the Python stdlib)")
    n, new = (4, 48) if quick else (8, 96)
    prompts = demo_models.held_out_prompts(tok, n, min(32, llm.config.n_positions // 4), seed=3)

    def timed(fn):
        fn()
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    with torch.no_grad():
        plain, t_plain = timed(lambda: torch.cat([llm.generate(p[None], attention_mask=torch.ones_like(p[None]),
                                                               max_new_tokens=new, do_sample=False, pad_token_id=0)
                                                  for p in prompts]))
        lean, t_lean = timed(lambda: torch.cat([lean_gpt2.greedy(llm, p[None], new) for p in prompts]))
        engine = Minions(llm, ssms, pipeline="auto", lean_llm=True)
        ours, t_ours = timed(lambda: torch.cat([engine.generate(p[None], max_new_tokens=new) for p in prompts]))
        batched = engine.generate(prompts, max_new_tokens=new)
    s = engine.stats
    print(f"{n} held-out prompts x {new} tokens, batch 1: plain greedy (HF) {n * new / t_plain:.1f} tok/s, "
          f"greedy on leanops' lean runner {n * new / t_lean:.1f} tok/s, Minions (3 SSMs, vote, adaptive, "
          f"pipeline auto, lean runner) {n * new / t_ours:.1f} tok/s: {t_plain / t_ours:.2f}x HF greedy, "
          f"{t_lean / t_ours:.2f}x lean greedy")
    print(f"same tokens as HF greedy: lean greedy {torch.equal(plain, lean)}, Minions {torch.equal(plain, ours)}, "
          f"Minions at batch {n} in one call {torch.equal(plain, batched)}")
    print(f"last run (batch {n}): {s.tokens_per_pass:.2f} tokens per LLM pass, acceptance per SSM "
          f"{[round(a, 2) for a in s.acceptance()]}, vote weights {[round(w, 2) for w in s.weights]}, "
          f"mean draft length {sum(s.chosen_lengths) / len(s.chosen_lengths):.1f}")
    text = tok.decode(ours[0, prompts.shape[1]:].tolist())
    print("prompt end: " + repr(tok.decode(prompts[0, -12:].tolist())) + "\ncontinuation: " + repr(text[:200]))


def run(quick: bool = False) -> None:
    import leanops

    info = leanops.build_info()
    print(f"leanops {info['version']} on torch {info['torch_version']}; backends: {', '.join(info['backends'])}; "
          f"threads: {info['threads']}")
    _tome_minilm(quick)
    _tome_vit(quick)
    _kfatt(quick)
    _minions(quick)
