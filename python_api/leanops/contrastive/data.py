"""Real dialogue text: the English conversations of the ``chatterbot-corpus`` package, as
(context, response) pairs, split by conversation, and a small BPE tokenizer trained on the training side.

A conversation ``[u0, u1, ..., un]`` gives the pairs ``(u_{i-1}, u_i)``: the context is the previous turn.
Many contexts recur with several different replies ("How are you?" -> "Good." / "Fine, and you?" ...),
which is the one-to-many structure the group-wise method is built for. Both sides of a split never
share a conversation (the same context text can still occur in both, as separate conversations).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

SPECIAL = {"pad": "<pad>", "bos": "<bos>", "sep": "<sep>", "eos": "<eos>"}


@dataclass(frozen=True)
class Pair:
    context: str
    response: str
    conversation: int  # index of the conversation the pair comes from (the split unit)
    topic: str


def corpus_dir(language: str = "english") -> str:
    try:
        import chatterbot_corpus
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("needs chatterbot-corpus: pip install chatterbot-corpus", name=exc.name) from exc
    path = os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", language)
    if not os.path.isdir(path):
        raise ValueError(f"language {language!r} has no folder in chatterbot_corpus/data")
    return path


def load_pairs(language: str = "english", topics: list[str] | None = None) -> list[Pair]:
    """Every (previous turn, turn) pair of the corpus's conversations, in file order (topics: file stems)."""
    import yaml

    folder = corpus_dir(language)
    pairs: list[Pair] = []
    conv_id = 0
    for name in sorted(os.listdir(folder)):
        stem = name.rsplit(".", 1)[0]
        if not name.endswith((".yml", ".yaml")) or (topics is not None and stem not in topics):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        for conv in doc.get("conversations") or []:
            turns = [" ".join(str(t).split()) for t in conv if t is not None and str(t).strip()]
            for prev, cur in zip(turns, turns[1:]):
                pairs.append(Pair(prev, cur, conv_id, stem))
            conv_id += 1
    if not pairs:
        raise ValueError(f"no conversations found for language={language!r}, topics={topics!r}")
    return pairs


def split_by_conversation(pairs: list[Pair], fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """(train, valid, test) lists of pairs; whole conversations go to one side, shuffled by ``seed``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    convs = sorted({p.conversation for p in pairs})
    random.Random(seed).shuffle(convs)
    n_train = round(fractions[0] * len(convs))
    n_valid = round(fractions[1] * len(convs))
    side = {c: 0 for c in convs[:n_train]}
    side.update({c: 1 for c in convs[n_train:n_train + n_valid]})
    side.update({c: 2 for c in convs[n_train + n_valid:]})
    out = ([], [], [])
    for p in pairs:
        out[side[p.conversation]].append(p)
    return out


def train_tokenizer(texts: list[str], vocab_size: int = 1000):
    """Byte-level BPE (the ``tokenizers`` library) wrapped as a ``PreTrainedTokenizerFast`` with
    ``<pad> <bos> <sep> <eos>`` specials (ids 0..3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIAL["pad"], bos_token=SPECIAL["bos"],
                                   sep_token=SPECIAL["sep"], eos_token=SPECIAL["eos"])


def encode_pairs(tokenizer, pairs: list[Pair], max_tokens: int = 32, encoder_decoder: bool = False):
    """(context id lists, response id lists). Causal layout: ``<bos> context <sep>`` then ``response <eos>``
    (so a model continues a context after ``<sep>``); seq2seq: ``context <eos>`` and ``response <eos>``.
    Long turns keep their first ``max_tokens`` tokens."""
    def ids(texts):
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    ctx, resp = ids([p.context for p in pairs]), ids([p.response for p in pairs])
    if encoder_decoder:
        ctx = [c[:max_tokens] + [tokenizer.eos_token_id] for c in ctx]
    else:
        ctx = [[tokenizer.bos_token_id] + c[-max_tokens:] + [tokenizer.sep_token_id] for c in ctx]
    resp = [r[:max_tokens] + [tokenizer.eos_token_id] for r in resp]
    return ctx, resp
