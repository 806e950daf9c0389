"""PYRA's merge schedules and the check that a schedule fits the tokens a model has.

``"low"`` and ``"high"`` are PYRA's ViT-B/16 schedules (12 layers, 197 tokens, 1 class token, so 196
mergeable). For another depth or token count the same *fractions of the mergeable tokens* are merged by the
same *relative depth*: the cumulative fraction merged after layer ``l`` of ``L`` is ViT-B/16's cumulative
fraction at depth ``(l + 1) / L`` (linear interpolation between its layers, 0 before the first), times the
model's mergeable tokens, rounded; a layer's r is the step of that cumulative count, lowered where bipartite
matching cannot give that many (r <= the A tokens left).
"""
from __future__ import annotations

from .._token_layout import effective_r, split_sizes
from ..tome.schedule import r_schedule

NAMED = {
    "low": [16] * 11 + [10],
    "high": [40, 34, 30, 24, 18, 14, 10, 8, 4, 4, 3, 3],
}
_VIT_B16_LAYERS, _VIT_B16_MERGEABLE = 12, 196


def _cumulative_fraction(name: str, depth: float) -> float:
    """Fraction of ViT-B/16's mergeable tokens merged once ``depth`` (0..1) of its layers have run."""
    sched = NAMED[name]
    cum = [0.0]
    for r in sched:
        cum.append(cum[-1] + r / _VIT_B16_MERGEABLE)
    pos = depth * _VIT_B16_LAYERS
    lo = min(int(pos), _VIT_B16_LAYERS - 1)
    return cum[lo] + (cum[lo + 1] - cum[lo]) * (pos - lo)


def rescale(name: str, num_layers: int, num_tokens: int, num_protected: int = 1) -> list[int]:
    """The named schedule for ``num_layers`` layers and ``num_tokens`` input tokens (see the module doc)."""
    if name not in NAMED:
        raise ValueError(f"r as a string must be one of {sorted(NAMED)}, got {name!r}")
    mergeable = num_tokens - num_protected
    if num_layers == _VIT_B16_LAYERS and mergeable == _VIT_B16_MERGEABLE:
        return list(NAMED[name])
    out, done, n = [], 0, num_tokens
    for layer in range(num_layers):
        target = round(_cumulative_fraction(name, (layer + 1) / num_layers) * mergeable)
        r = max(0, min(target - done, effective_r(n, n, num_protected)))
        out.append(r)
        done += r
        n -= r
    return out


def resolve(r, num_layers: int, num_tokens: int | None, num_protected: int = 1) -> list[int]:
    """r (int, per-layer list, ``(r, inflect)`` or ``"low"``/``"high"``) as one r per layer."""
    if isinstance(r, list) and len(r) > num_layers:
        raise ValueError(f"r has {len(r)} entries but the model has {num_layers} merging layers")
    if isinstance(r, str):
        if num_tokens is None:
            raise ValueError(f"r={r!r} is rescaled to the model's token count: pass num_tokens (the padded input "
                             "length) for text models")
        return rescale(r, num_layers, num_tokens, num_protected)
    return r_schedule(r, num_layers)


def tokens_per_layer(schedule: list[int], num_tokens: int, num_protected: int = 1) -> list[int]:
    """Tokens after each layer; raises if some layer's r is larger than the tokens left to merge."""
    out, n = [], num_tokens
    for i, r in enumerate(schedule):
        na, nb = split_sizes(n, num_protected)
        can = na if nb > 0 else 0
        if r > can:
            raise ValueError(f"r[{i}]={r} is larger than the tokens left: layer {i} has {n} tokens, of which "
                             f"{can} can merge (num_protected={num_protected})")
        n -= r
        out.append(n)
    return out
