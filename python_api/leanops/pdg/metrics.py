"""Metrics of generated descriptions against the generator's ground truth.

BLEU (sacrebleu, corpus level), ROUGE-L F1 (rouge-score, mean over items), distinct-1/2 (distinct n-grams /
all n-grams over the corpus), attribute-fact accuracy (of the attribute values the output mentions, the
share that are the product's own; values of colour, material and the category keys are recognised), fact
recall (share of the product's colour and material stated), brand accuracy (the product's brand string
appears), aspect coverage (share of the product's cared aspects mentioned) and aspect precision (share of
mentioned aspects that are cared ones).
"""
from __future__ import annotations

import re

from .data import CATEGORIES, COLOURS, MATERIALS


def _mentions(text: str, values) -> list:
    return [v for v in values if re.search(r"(?<![\w-])" + re.escape(v) + r"(?![\w-])", text)]


def distinct(texts, n: int) -> float:
    grams, total = set(), 0
    for t in texts:
        w = t.split()
        g = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
        grams.update(g)
        total += len(g)
    return len(grams) / total if total else 0.0


def fact_scores(product, text: str) -> dict:
    spec = CATEGORIES[product.category]
    known = {"colour": COLOURS, "material": MATERIALS, **spec["keys"]}
    correct = mentioned = 0
    for key, values in known.items():
        for v in _mentions(text, values):
            mentioned += 1
            correct += product.attributes.get(key) == v
    recall = sum(bool(_mentions(text, [product.attributes[k]])) for k in ("colour", "material")) / 2
    return {"correct": correct, "mentioned": mentioned, "recall": recall,
            "brand": float(bool(_mentions(text, [product.attributes["brand"]])))}


def aspect_scores(product, text: str) -> dict:
    names = list(CATEGORIES[product.category]["aspects"])
    said = _mentions(text, names)
    cared = set(product.aspects)
    return {"coverage": sum(a in said for a in cared) / len(cared),
            "precision": sum(a in cared for a in said) / len(said) if said else None}


def evaluate(products, texts) -> dict:
    """Every metric of ``texts`` (generated) against ``products`` (their references and ground truth)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(products) != len(texts) or not texts:
        raise ValueError(f"products and texts must be non-empty and of equal length, got {len(products)} and {len(texts)}")
    refs = [p.description for p in products]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    facts = [fact_scores(p, t) for p, t in zip(products, texts)]
    aspects = [aspect_scores(p, t) for p, t in zip(products, texts)]
    precisions = [a["precision"] for a in aspects if a["precision"] is not None]
    unseen = [f["brand"] for p, f in zip(products, facts) if not p.brand_seen]
    seen = [f["brand"] for p, f in zip(products, facts) if p.brand_seen]
    mentioned = sum(f["mentioned"] for f in facts)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"bleu": sacrebleu.corpus_bleu(texts, [refs]).score,
            "rougeL": 100 * mean([scorer.score(r, t)["rougeL"].fmeasure for r, t in zip(refs, texts)]),
            "distinct1": distinct(texts, 1), "distinct2": distinct(texts, 2),
            "fact_accuracy": sum(f["correct"] for f in facts) / mentioned if mentioned else float("nan"),
            "fact_recall": mean([f["recall"] for f in facts]),
            "brand_seen": mean(seen), "brand_unseen": mean(unseen),
            "aspect_coverage": mean([a["coverage"] for a in aspects]),
            "aspect_precision": mean(precisions), "n": len(texts)}
