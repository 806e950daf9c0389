"""Products -> padded tensors: source pieces with field ids, extended ids, reviews, targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch

TITLE_FIELD, REVIEW_FIELD, UNKNOWN_FIELD = 1, 2, 3  # field 0 is padding; attribute keys start at 4


def field_ids(keys) -> dict:
    """Field id of every attribute key seen in training (``keys``: iterable of key names)."""
    return {k: 4 + i for i, k in enumerate(sorted(set(keys)))}


@dataclass
class Batch:
    src: torch.Tensor        # [B, S] vocabulary ids (unknown pieces are [UNK])
    src_ext: torch.Tensor    # [B, S] extended ids (unknown pieces are V + j)
    src_field: torch.Tensor  # [B, S] field ids (0 = padding)
    reviews: torch.Tensor    # [B, R, L] review pieces (0 = padding; R >= 1)
    has_reviews: torch.Tensor  # [B] bool
    tgt_in: torch.Tensor     # [B, T] [BOS] + target, extended ids mapped to [UNK]
    tgt_out: torch.Tensor    # [B, T] target + [EOS], extended ids
    ext_words: list          # per example: the surfaces of its extended ids
    n_ext: int

    @property
    def src_mask(self):
        return self.src_field > 0


def _pad(rows, value=0):
    width = max(1, max((len(r) for r in rows), default=1))
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def encode(products, vocab, fields: dict, reviews_in_source: bool = False, use_reviews: bool = True,
           unknown_keys: str = "error", max_reviews: int = 4, max_review_len: int = 24,
           max_target_len: int = 64) -> Batch:
    """Encode products. Empty titles or attribute sets are an error; so is an attribute key not in
    ``fields`` unless ``unknown_keys="unk"`` (then it gets the shared unknown-field embedding).
    ``use_reviews=False`` drops every product's reviews (the long-tail condition)."""
    if unknown_keys not in ("error", "unk"):
        raise ValueError(f"unknown_keys must be 'error' or 'unk', got {unknown_keys!r}")
    if len(products) == 0:
        raise ValueError("products must not be empty")
    src, src_ext, src_field, reviews, has, tin, tout, exts = [], [], [], [], [], [], [], []
    for p in products:
        if not isinstance(p.title, str) or not p.title.strip():
            raise ValueError(f"product title must be a non-empty string, got {p.title!r}")
        if not isinstance(p.attributes, dict) or not p.attributes:
            raise ValueError(f"product attributes must be a non-empty dict of key -> value, got {p.attributes!r}")
        ext_words: list = []
        ids, fid = [], []
        pieces = vocab.pieces(p.title)
        ids += vocab.extend(pieces, ext_words)
        fid += [TITLE_FIELD] * len(pieces)
        for key, value in p.attributes.items():
            if key not in fields and unknown_keys == "error":
                raise ValueError(f"unknown attribute key {key!r} (known: {sorted(fields)}); pass "
                                 f"unknown_keys='unk' to map it to the unknown-field embedding")
            pieces = vocab.pieces(str(value))
            if not pieces:
                raise ValueError(f"attribute {key!r} has an empty value")
            ids += vocab.extend(pieces, ext_words)
            fid += [fields.get(key, UNKNOWN_FIELD)] * len(pieces)
        revs = [r for r in (p.reviews if use_reviews else [])][:max_reviews]
        if reviews_in_source:
            for r in revs:
                pieces = vocab.pieces(r)[:max_review_len]
                ids += [vocab.sep] + vocab.extend(pieces, ext_words)
                fid += [REVIEW_FIELD] * (len(pieces) + 1)
        src_ext.append(ids)
        src.append([i if i < vocab.size else vocab.unk for i in ids])
        src_field.append(fid)
        reviews.append([[t for t, _, _ in vocab.pieces(r)][:max_review_len] for r in revs] or [[]])
        has.append(bool(revs))
        target = vocab.target_ids(vocab.pieces(p.description), ext_words)[:max_target_len - 1] if p.description else []
        tin.append([vocab.bos] + [i if i < vocab.size else vocab.unk for i in target])
        tout.append(target + [vocab.eos])
        exts.append(ext_words)
    r_max = max(len(r) for r in reviews)
    l_max = max(1, max(len(x) for r in reviews for x in r))
    rev = torch.full((len(products), r_max, l_max), vocab.pad, dtype=torch.long)
    for b, rs in enumerate(reviews):
        for j, x in enumerate(rs):
            rev[b, j, :len(x)] = torch.tensor(x, dtype=torch.long)
    return Batch(_pad(src, vocab.pad), _pad(src_ext, vocab.pad), _pad(src_field, 0), rev,
                 torch.tensor(has), _pad(tin, vocab.pad), _pad(tout, vocab.pad), exts,
                 max((len(e) for e in exts), default=0))
