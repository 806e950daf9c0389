"""r schedules: how many tokens each layer merges.

``r`` may be an int (the same every layer), a tuple ``(r, inflect)`` (a linear ramp whose mean is r:
from ``r*(1-inflect)`` at the first layer to ``r*(1+inflect)`` at the last, as ToMe defines it), or a
list with one entry per layer.
"""
from __future__ import annotations


def r_schedule(r, num_layers: int) -> list[int]:
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    if isinstance(r, bool):
        raise TypeError("r must be an int, a (r, inflect) tuple or a list of ints, got bool")
    if isinstance(r, int):
        if r < 0:
            raise ValueError(f"r must be >= 0, got {r}")
        return [r] * num_layers
    if isinstance(r, tuple):
        if len(r) != 2:
            raise ValueError(f"r as a tuple must be (r, inflect), got {r!r}")
        base, inflect = r
        if not isinstance(base, int) or base < 0:
            raise ValueError(f"r in (r, inflect) must be an int >= 0, got {base!r}")
        if not -1.0 <= float(inflect) <= 1.0:
            raise ValueError(f"inflect must be in [-1, 1], got {inflect}")
        lo, hi = base * (1.0 - inflect), base * (1.0 + inflect)
        if num_layers == 1:
            return [base]
        return [int(lo + (hi - lo) * i / (num_layers - 1)) for i in range(num_layers)]
    if isinstance(r, list):
        if len(r) != num_layers:
            raise ValueError(f"r as a list needs one entry per layer ({num_layers}), got {len(r)}")
        for i, v in enumerate(r):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"r[{i}] must be an int >= 0, got {v!r}")
        return list(r)
    raise TypeError(f"r must be an int, a (r, inflect) tuple or a list of ints, got {type(r).__name__}")
