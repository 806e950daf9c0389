"""The data pipeline: precomputed groups turned into padded batches by a ``DataLoader`` (workers allowed),
so no sampling happens inside the training step.

One batch of B training pairs holds, in this order of rows: the B observed pairs (score 1), then for each
pair its k response-side positives, k response-side negatives, k context-side positives and k
context-side negatives (their calibrated scores), i.e. ``B * (1 + 4k)`` rows scored in one forward.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .sampling import SIDES, Groups


def pad_rows(rows: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


class GroupDataset(Dataset):
    """Item i: the observed pair i and its sampled pairs, as token id lists with scores."""

    def __init__(self, context_ids: list[list[int]], response_ids: list[list[int]], groups: Groups | None):
        if len(context_ids) != len(response_ids):
            raise ValueError(f"context_ids and response_ids must have the same length, got "
                             f"{len(context_ids)} and {len(response_ids)}")
        if groups is not None and len(groups) != len(context_ids):
            raise ValueError(f"groups covers {len(groups)} pairs but there are {len(context_ids)}")
        self.ctx, self.resp, self.groups = context_ids, response_ids, groups

    def __len__(self) -> int:
        return len(self.ctx)

    def __getitem__(self, i: int) -> dict:
        slots = 1 + (4 * self.groups.k if self.groups is not None else 0)
        item = {"observed": (self.ctx[i], self.resp[i]), "sampled": [], "row_id": i * slots}
        if self.groups is not None:
            for side in SIDES:
                for j, s in zip(self.groups.index[side][i].tolist(), self.groups.score[side][i].tolist()):
                    pair = (self.ctx[i], self.resp[j]) if side.startswith("response") else (self.ctx[j], self.resp[i])
                    item["sampled"].append((*pair, s))
        return item


class GroupCollator:
    """Pads a list of items into one batch (see the module docstring for the row order). Contexts are
    padded on the left (the layout generation uses), responses on the right; ``sequence_logprob`` accepts both."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        ctx = [it["observed"][0] for it in items]
        resp = [it["observed"][1] for it in items]
        scores = [1.0] * len(items)
        # row ids name each (pair, slot) for the whole run, so a frozen reference's scores can be cached
        row_ids = [it.get("row_id", -1) for it in items]
        for it in items:
            for m, (c, r, s) in enumerate(it["sampled"]):
                ctx.append(c)
                resp.append(r)
                scores.append(s)
                row_ids.append(it["row_id"] + 1 + m if "row_id" in it else -1)
        c_ids, c_mask = pad_rows(ctx, self.pad_id, "left")
        r_ids, r_mask = pad_rows(resp, self.pad_id, "right")
        return {"context_ids": c_ids, "context_mask": c_mask, "response_ids": r_ids, "response_mask": r_mask,
                "scores": torch.tensor(scores, dtype=torch.float32), "num_observed": len(items),
                "row_ids": torch.tensor(row_ids, dtype=torch.long)}


def group_loader(dataset: GroupDataset, batch_size: int, pad_id: int, shuffle: bool = True, num_workers: int = 0,
                 seed: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=GroupCollator(pad_id), drop_last=len(dataset) >= batch_size,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0)
