"""``leanops demo`` section: replies of a tiny GPT-2 on real chatterbot-corpus dialogue before and after
group-wise contrastive training (vs the same number of continued MLE steps)."""
from __future__ import annotations


def section(quick: bool) -> None:
    import copy

    from .data import encode_pairs, load_pairs, split_by_conversation, train_tokenizer
    from .evaluate import evaluate
    from .experiment import tiny_gpt2
    from .matching import HashedBagOfWords, MiniLMEmbedder, TextEmbeddings, calibrate
    from .pipeline import GroupDataset, group_loader
    from .sampling import sample_groups
    from .trainer import Trainer, frozen_copy

    # quick: a few topics, a hashed bag-of-words matcher instead of MiniLM, few steps (the experiment has the real run)
    topics = ["greetings", "emotion", "food", "humor", "conversations"] if quick else None
    steps = (120, 30) if quick else (400, 120)
    pairs = load_pairs(topics=topics)
    train, valid, test = split_by_conversation(pairs, seed=0)
    tok = train_tokenizer([p.context for p in train] + [p.response for p in train], 500 if quick else 800)
    texts = [p.context for p in pairs] + [p.response for p in pairs]
    emb = TextEmbeddings(HashedBagOfWords() if quick else MiniLMEmbedder(), texts)
    shifted = valid[1:] + valid[:1]
    cal = calibrate(emb.cosine([p.context for p in valid], [p.response for p in valid]),
                    emb.cosine([p.context for p in valid], [p.response for p in shifted]))
    groups = sample_groups(train, emb, cal, k=1, candidates=8, seed=0)
    ctx, resp = encode_pairs(tok, train, max_tokens=20)
    model = tiny_gpt2(len(tok), 64, 2, 4, 0, tok)
    Trainer(model, None, lr=3e-3, max_alpha=0.0, progress=False).fit(
        group_loader(GroupDataset(ctx, resp, None), 32, tok.pad_token_id), steps[0])
    mle, con = copy.deepcopy(model), copy.deepcopy(model)
    Trainer(mle, None, lr=5e-4, max_alpha=0.0, progress=False).fit(
        group_loader(GroupDataset(ctx, resp, None), 32, tok.pad_token_id, seed=1), steps[1])
    Trainer(con, frozen_copy(model), lr=5e-4, anneal_steps=steps[1] // 3, max_alpha=0.5, progress=False).fit(
        group_loader(GroupDataset(ctx, resp, groups), 32, tok.pad_token_id, seed=1), steps[1])
    results = {name: evaluate(m, tok, test, max_tokens=20) for name, m in
               (("before (MLE)", model), ("continued MLE", mle), ("contrastive", con))}
    print(f"\n== contrastive: group-wise contrastive dialogue training (chatterbot-corpus, {len(train)} train pairs, "
          f"tiny GPT-2{', quick: bag-of-words matcher' if quick else ', MiniLM matcher'}) ==")
    print(f"{'':<16}{'distinct-1':>11}{'distinct-2':>11}{'ppl':>8}{'rank acc':>10}")
    for name, r in results.items():
        print(f"{name:<16}{r['distinct_1']:>11.3f}{r['distinct_2']:>11.3f}{r['perplexity']:>8.2f}"
              f"{r['ranking_accuracy']:>10.3f}")
    for c in list(results["before (MLE)"]["replies"])[:5]:
        print(f"  {c}")
        for name, r in results.items():
            print(f"     {name:<15} -> {r['replies'][c]}")
    print("  (one seed, tiny model: `python -m leanops.contrastive.experiment --quick` has the seeds and paired "
          "differences)")
