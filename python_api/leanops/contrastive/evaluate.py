"""Evaluation of a dialogue model on held-out pairs: greedy replies and their diversity (distinct-1/2,
unigram entropy, length), BLEU against every held-out reply of the same context (``sacrebleu``),
perplexity of the held-out replies, and ranking accuracy (the true reply beats 9 random held-out replies
by per-token log-likelihood)."""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import torch

from .data import Pair, encode_pairs
from .logprob import is_encoder_decoder, sequence_logprob
from .pipeline import pad_rows


def words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(replies: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the replies (word level); 0 if there is none."""
    grams = [tuple(w[i:i + n]) for w in map(words, replies) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_entropy(replies: list[str]) -> float:
    """Entropy in bits of the pooled word distribution of the replies."""
    counts = Counter(w for r in replies for w in words(r))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


@torch.no_grad()
def generate_replies(model, tokenizer, contexts: list[str], max_new_tokens: int = 24, batch_size: int = 64,
                     max_tokens: int = 32) -> list[str]:
    """Greedy replies (deterministic, the decoding that shows MLE's blandness most plainly)."""
    model.eval()
    encdec = is_encoder_decoder(model)
    pairs = [Pair(c, "x", 0, "") for c in contexts]
    ctx, _ = encode_pairs(tokenizer, pairs, max_tokens, encdec)
    out = []
    for s in range(0, len(ctx), batch_size):
        ids, mask = pad_rows(ctx[s:s + batch_size], tokenizer.pad_token_id, "left")
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             num_beams=1, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = gen if encdec else gen[:, ids.shape[1]:]
        out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out


@torch.no_grad()
def pair_logprobs(model, tokenizer, pairs: list[Pair], batch_size: int = 128, max_tokens: int = 32):
    """([N] summed log-likelihoods, [N] response token counts) of the pairs' responses."""
    model.eval()
    ctx, resp = encode_pairs(tokenizer, pairs, max_tokens, is_encoder_decoder(model))
    logps, counts = [], []
    for s in range(0, len(ctx), batch_size):
        c_ids, c_mask = pad_rows(ctx[s:s + batch_size], tokenizer.pad_token_id, "left")
        r_ids, r_mask = pad_rows(resp[s:s + batch_size], tokenizer.pad_token_id, "right")
        lp, n = sequence_logprob(model, c_ids, r_ids, c_mask, r_mask, return_token_counts=True)
        logps.append(lp)
        counts.append(n)
    return torch.cat(logps), torch.cat(counts)


def ranking_pairs(test: list[Pair], distractors: int = 9, seed: int = 0) -> list[list[Pair]]:
    """For each test pair: [true pair, then ``distractors`` pairs of its context with other test replies]."""
    rng = random.Random(seed)
    replies = sorted({p.response for p in test})
    if len(replies) <= distractors:
        raise ValueError(f"ranking needs more than {distractors} distinct test replies, got {len(replies)}")
    out = []
    for p in test:
        others = rng.sample([r for r in replies if r != p.response], distractors)
        out.append([p] + [Pair(p.context, r, p.conversation, p.topic) for r in others])
    return out


def evaluate(model, tokenizer, test: list[Pair], seed: int = 0, max_tokens: int = 32) -> dict:
    import sacrebleu

    refs_by_context: dict[str, list[str]] = defaultdict(list)
    for p in test:
        refs_by_context[p.context].append(p.response)
    contexts = list(refs_by_context)
    replies = generate_replies(model, tokenizer, contexts, max_tokens=max_tokens)
    width = max(len(r) for r in refs_by_context.values())
    # duplicated references change neither clipped counts nor the closest reference length
    streams = [[refs_by_context[c][min(j, len(refs_by_context[c]) - 1)] for c in contexts] for j in range(width)]
    bleu = sacrebleu.corpus_bleu(replies, streams).score
    logp, counts = pair_logprobs(model, tokenizer, test, max_tokens=max_tokens)
    groups = ranking_pairs(test, seed=seed)
    flat = [q for g in groups for q in g]
    r_logp, r_counts = pair_logprobs(model, tokenizer, flat, max_tokens=max_tokens)
    per_token = (r_logp / r_counts).view(len(groups), -1)
    ranking = float((per_token[:, 0:1] > per_token[:, 1:]).all(1).float().mean())
    return {"distinct_1": distinct_n(replies, 1), "distinct_2": distinct_n(replies, 2),
            "entropy_bits": unigram_entropy(replies), "avg_length": sum(len(words(r)) for r in replies) / len(replies),
            "bleu": bleu, "perplexity": math.exp(float(-logp.sum() / counts.sum())), "ranking_accuracy": ranking,
            "replies": dict(zip(contexts, replies))}
