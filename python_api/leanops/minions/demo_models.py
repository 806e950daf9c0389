"""Real models to measure Minions on, trained here on CPU from a corpus every machine has: the Python
standard library's own source files.

* a byte-level BPE tokenizer trained on the training files;
* the LLM: a Hugging Face ``GPT2LMHeadModel`` trained on the corpus (next-token loss);
* three SSMs, distilled from the LLM as Minions does: the LLM continues corpus prompts by sampling,
  and each SSM learns the LLM's full next-token distribution (KL) on those continuations. The SSMs
  differ in size and in the half of the corpus their prompts come from, so they disagree.

Files whose name hashes to 0 mod 20 are held out, for perplexity and acceptance. Everything is cached
under ``$LEANOPS_CACHE`` (default ``~/.cache/leanops``)/minions/<mode>.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import sysconfig
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

SKIP_PARTS = {"site-packages", "test", "tests", "idle_test", "lib2to3"}


@dataclass
class ModelSize:
    layers: int
    width: int
    heads: int


@dataclass
class Recipe:
    """Sizes and budgets of one training mode."""
    vocab: int
    context: int
    llm: ModelSize
    ssms: tuple
    llm_seconds: float
    batch: int
    distill_prompts: int
    distill_new_tokens: int
    ssm_seconds: float
    max_corpus_mb: float


RECIPES = {
    # about 30 minutes on 2 CPU cores
    "full": Recipe(vocab=4096, context=256, llm=ModelSize(8, 512, 8),
                   ssms=(ModelSize(1, 128, 2), ModelSize(2, 192, 3), ModelSize(2, 128, 2)),
                   llm_seconds=1140, batch=8, distill_prompts=768, distill_new_tokens=96, ssm_seconds=150,
                   max_corpus_mb=12),
    # a few minutes, for `leanops demo` on a fresh machine
    "quick": Recipe(vocab=2048, context=128, llm=ModelSize(4, 256, 4),
                    ssms=(ModelSize(1, 64, 2), ModelSize(1, 128, 2), ModelSize(2, 64, 2)),
                    llm_seconds=100, batch=8, distill_prompts=192, distill_new_tokens=48, ssm_seconds=20,
                    max_corpus_mb=3),
    # seconds, for tests of this script
    "tiny": Recipe(vocab=300, context=32, llm=ModelSize(1, 32, 2),
                   ssms=(ModelSize(1, 16, 2), ModelSize(1, 16, 2), ModelSize(1, 16, 2)),
                   llm_seconds=2, batch=4, distill_prompts=8, distill_new_tokens=8, ssm_seconds=1,
                   max_corpus_mb=0.2),
}


def cache_dir(mode: str) -> pathlib.Path:
    root = os.environ.get("LEANOPS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "leanops")
    return pathlib.Path(root) / "minions" / mode


def is_held_out(path: pathlib.Path) -> bool:
    return int(hashlib.sha1(path.name.encode()).hexdigest(), 16) % 20 == 0


def corpus_files(max_mb: float) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """(train, held-out) stdlib source files, sorted; train capped at ``max_mb`` of text."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not SKIP_PARTS & set(p.relative_to(root).parts))
    train, held = [], []
    budget = max_mb * 1e6
    for p in files:
        if is_held_out(p):
            held.append(p)
        elif budget > 0:
            train.append(p)
            budget -= p.stat().st_size
    return train, held


def _read(paths) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def train_tokenizer(texts: list[str], vocab: int):
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab, min_frequency=2, special_tokens=["<|endoftext|>"])
    return tok


def encode(tok, texts: list[str]) -> torch.Tensor:
    """One token stream, files separated by the end-of-text token (id 0)."""
    ids = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(0)
    return torch.tensor(ids, dtype=torch.long)


def make_gpt2(size: ModelSize, vocab: int, context: int, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=context * 2, n_embd=size.width, n_layer=size.layers,
                     n_head=size.heads, bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


def _windows(stream: torch.Tensor, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    start = torch.randint(0, stream.shape[0] - length - 1, (batch,), generator=gen)
    return torch.stack([stream[s: s + length + 1] for s in start.tolist()])


def _lr(step_frac: float, peak: float) -> float:
    """Linear warm-up over the first 5%, cosine decay to 10% of the peak."""
    if step_frac < 0.05:
        return peak * step_frac / 0.05
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step_frac - 0.05) / 0.95)))


def _tick(bar, start: float, seconds: float, **postfix) -> None:
    """Advance a seconds-based progress bar (tqdm throttles the redraws)."""
    bar.set_postfix(refresh=False, **postfix)
    bar.update(max(0, min(int(time.perf_counter() - start), int(seconds)) - bar.n))


def train_lm(model, stream: torch.Tensor, seconds: float, batch: int, length: int, desc: str, seed: int = 0,
             peak_lr: float = 1e-3) -> dict:
    """Next-token training for a wall-clock budget (the learning-rate schedule follows elapsed time)."""
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.1, betas=(0.9, 0.95))
    model.train()
    start, steps, tokens, ema = time.perf_counter(), 0, 0, None
    with tqdm(total=int(seconds), desc=desc, unit="s", mininterval=1.0) as bar:
        while (elapsed := time.perf_counter() - start) < seconds:
            for group in opt.param_groups:
                group["lr"] = _lr(elapsed / seconds, peak_lr)
            w = _windows(stream, batch, length, gen)
            loss = model(input_ids=w[:, :-1], labels=w[:, :-1]).loss  # HF shifts labels inside
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps, tokens = steps + 1, tokens + w[:, :-1].numel()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            _tick(bar, start, seconds, loss=f"{ema:.3f}", tok_s=f"{tokens / (time.perf_counter() - start):.0f}")
    model.eval()
    return {"steps": steps, "tokens": tokens, "seconds": time.perf_counter() - start, "final_loss_ema": ema}


@torch.no_grad()
def perplexity(model, stream: torch.Tensor, length: int, max_tokens: int = 60000) -> float:
    """Held-out perplexity over consecutive non-overlapping windows."""
    model.eval()
    total, count = 0.0, 0
    n = min(stream.shape[0] - 1, max_tokens)
    for s in range(0, n - length, length):
        w = stream[s: s + length + 1][None]
        logits = model(input_ids=w[:, :-1]).logits
        total += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
        count += length
    return math.exp(total / max(count, 1))


@torch.no_grad()
def llm_continuations(llm, stream: torch.Tensor, prompts: int, prompt_len: int, new: int, seed: int,
                      desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The LLM continues random corpus windows by sampling; returns (sequences, the LLM's log-probs at
    each generated position) for distillation."""
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    seqs, logps = [], []
    chunk = 64
    for i in tqdm(range(0, prompts, chunk), desc=desc):
        w = _windows(stream, min(chunk, prompts - i), prompt_len - 1, gen)
        torch.manual_seed(seed + i)
        out = llm.generate(w, attention_mask=torch.ones_like(w), max_new_tokens=new, do_sample=True, top_k=0, temperature=1.0, pad_token_id=0,
                           output_logits=True, return_dict_in_generate=True)
        seqs.append(out.sequences)
        logps.append(torch.log_softmax(torch.stack(out.logits, 1).float(), -1).to(torch.bfloat16))
    return torch.cat(seqs), torch.cat(logps)


def distill(student, seqs: torch.Tensor, teacher_logp: torch.Tensor, prompt_len: int, seconds: float,
            desc: str, seed: int = 0, batch: int = 16, peak_lr: float = 2e-3) -> dict:
    """KL(teacher || student) on the LLM's own continuations (Minions' distillation from LLM outputs)."""
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(student.parameters(), lr=peak_lr, weight_decay=0.0)
    student.train()
    new = teacher_logp.shape[1]
    start, steps, ema = time.perf_counter(), 0, None
    with tqdm(total=int(seconds), desc=desc, unit="s", mininterval=1.0) as bar:
        while (elapsed := time.perf_counter() - start) < seconds:
            for group in opt.param_groups:
                group["lr"] = _lr(elapsed / seconds, peak_lr)
            idx = torch.randint(0, seqs.shape[0], (batch,), generator=gen)
            logits = student(input_ids=seqs[idx, :-1]).logits[:, prompt_len - 1:]  # predicts the new tokens
            t = teacher_logp[idx].float()
            loss = F.kl_div(torch.log_softmax(logits, -1), t, log_target=True, reduction="batchmean") / new
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            _tick(bar, start, seconds, kl=f"{ema:.3f}")
    student.eval()
    return {"steps": steps, "seconds": time.perf_counter() - start, "final_kl_ema": ema}


def save(path: pathlib.Path, llm, ssms, tok, report: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    llm.save_pretrained(path / "llm")
    for i, m in enumerate(ssms):
        m.save_pretrained(path / f"ssm{i}")
    tok.save(str(path / "tokenizer.json"))
    (path / "report.json").write_text(json.dumps(report, indent=2))


def load(mode: str = "full"):
    """``(llm, [ssm0, ssm1, ssm2], tokenizer, report)`` from the cache, or None when not trained."""
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    path = cache_dir(mode)
    if not (path / "report.json").exists():
        return None
    llm = GPT2LMHeadModel.from_pretrained(path / "llm").eval()
    ssms = [GPT2LMHeadModel.from_pretrained(path / f"ssm{i}").eval() for i in range(3)]
    return llm, ssms, Tokenizer.from_file(str(path / "tokenizer.json")), json.loads((path / "report.json").read_text())


def load_first(modes=("full", "quick"), train: str | None = None):
    """``(mode, (llm, ssms, tokenizer, report))`` for the first of ``modes`` in the cache. When none is,
    trains ``train`` first, or returns ``(None, None)`` when ``train`` is None."""
    for mode in modes:
        found = load(mode)
        if found is not None:
            return mode, found
    if train is None:
        return None, None
    print(f"no cached Minions demo models: training the '{train}' set first (the full set, about 30 minutes: "
          "python -m leanops.minions.train_demo_models)")
    train_all(train)
    return train, load(train)


def held_out_prompts(tok, count: int, length: int, seed: int = 0) -> torch.Tensor:
    """``count`` prompts of ``length`` tokens from held-out stdlib files (never trained on)."""
    _, held = corpus_files(0)
    stream = encode(tok, _read(held))
    return _windows(stream, count, length - 1, torch.Generator().manual_seed(seed))


def train_all(mode: str = "full", force: bool = False, out: pathlib.Path | None = None) -> dict:
    from .engine import Minions

    path = out or cache_dir(mode)
    if (path / "report.json").exists() and not force:
        print(f"cached: {path} (use --force to retrain)")
        return json.loads((path / "report.json").read_text())
    r = RECIPES[mode]
    start = time.perf_counter()
    train_files, held_files = corpus_files(r.max_corpus_mb)
    train_texts, held_texts = _read(train_files), _read(held_files)
    print(f"corpus: {len(train_files)} stdlib files ({sum(map(len, train_texts)) / 1e6:.1f} M chars) to train, "
          f"{len(held_files)} held out, from {sysconfig.get_paths()['stdlib']}")
    tok = train_tokenizer(train_texts, r.vocab)
    stream, held = encode(tok, train_texts), encode(tok, held_texts)
    half = len(train_texts) // 2
    halves = [encode(tok, train_texts[:half]), encode(tok, train_texts[half:])]
    print(f"tokens: {stream.numel()} train, {held.numel()} held out (BPE vocab {tok.get_vocab_size()})")

    llm = make_gpt2(r.llm, tok.get_vocab_size(), r.context, seed=0)
    llm_run = train_lm(llm, stream, r.llm_seconds, r.batch, r.context, "LLM")
    report = {"mode": mode, "recipe": asdict(r), "corpus": "Python stdlib source (" + sysconfig.get_paths()["stdlib"]
              + ")", "train_tokens": stream.numel(), "held_out_tokens": held.numel(),
              "llm": {**asdict(r.llm), "params": sum(p.numel() for p in llm.parameters()), **llm_run,
                      "held_out_ppl": perplexity(llm, held, r.context)}}
    prompt_len = min(32, r.context // 2)
    data = [llm_continuations(llm, src, r.distill_prompts, prompt_len, r.distill_new_tokens, seed=10 + i,
                              desc=f"LLM continuations ({name})")
            for i, (name, src) in enumerate([("all", stream), ("first half", halves[0]), ("second half", halves[1])])]
    ssms, report["ssms"] = [], []
    for i, size in enumerate(r.ssms):
        ssm = make_gpt2(size, tok.get_vocab_size(), r.context, seed=100 + i)
        run = distill(ssm, *data[i], prompt_len, r.ssm_seconds, f"SSM{i} distil", seed=i)
        ssms.append(ssm)
        report["ssms"].append({**asdict(size), "params": sum(p.numel() for p in ssm.parameters()),
                               "prompts_from": ["all", "first half", "second half"][i], **run,
                               "held_out_ppl": perplexity(ssm, held, r.context)})
    report["acceptance"] = measure_acceptance(llm, ssms, tok, Minions)
    report["total_seconds"] = time.perf_counter() - start
    save(path, llm, ssms, tok, report)
    print(json.dumps({k: report[k] for k in ("llm", "ssms", "acceptance", "total_seconds")}, indent=1))
    print(f"saved to {path}")
    return report


@torch.no_grad()
def measure_acceptance(llm, ssms, tok, engine_cls, prompts: int = 8) -> dict:
    """Greedy acceptance of each SSM's own drafts against the LLM on held-out prompts (gamma = 4)."""
    length = min(32, llm.config.n_positions // 4)
    new = min(48, llm.config.n_positions - length - 10)
    ids = held_out_prompts(tok, prompts, length, seed=1)
    out = {}
    for i, ssm in enumerate(ssms):
        engine = engine_cls(llm, [ssm], gamma=4, adaptive=False)
        engine.generate(ids, max_new_tokens=new)
        out[f"ssm{i}"] = engine.stats.acceptance()[0]
    engine = engine_cls(llm, ssms, gamma=4, adaptive=False)
    engine.generate(ids, max_new_tokens=new)
    out["vote_tokens_per_pass"] = engine.stats.tokens_per_pass / prompts
    return out
