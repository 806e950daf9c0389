"""The one timing helper of every benchmark and demo.

``time_providers`` warms every provider up, then times N repeats, running the providers one after another
inside each repeat (interleaved, in a rotating order), so slow drift of the machine (other processes,
clocks, caches) hits every provider alike and the i-th repeats of two providers form a fair pair.
``Timing`` keeps every sample and reports median, p25/p75, min/max and n; ``ratio`` reports
anchor median / provider median with the p25-p75 range of the per-repeat paired ratios as its spread.
No best-of-N is ever picked: every repeat counts.
"""
from __future__ import annotations

import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _quantile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted samples."""
    if not sorted_xs:
        return math.nan
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Timing:
    """Wall seconds of every timed repeat of one provider, in run order."""

    samples: list[float]
    last_result: object = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.samples)

    def quantile(self, q: float) -> float:
        return _quantile(sorted(self.samples), q)

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    @property
    def p25(self) -> float:
        return self.quantile(0.25)

    @property
    def p75(self) -> float:
        return self.quantile(0.75)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def to_dict(self, unit: str = "ms") -> dict:
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
        return {f"median_{unit}": self.median * scale, f"p25_{unit}": self.p25 * scale,
                f"p75_{unit}": self.p75 * scale, f"min_{unit}": self.min * scale, f"max_{unit}": self.max * scale,
                "n": self.n}

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms (p25-p75 {self.p25 * 1e3:.3f}-{self.p75 * 1e3:.3f}, n={self.n})"


@dataclass
class Ratio:
    """``anchor median / provider median`` (> 1: the provider is faster), named after its anchor.

    ``p25``/``p75``: quartiles of the per-repeat paired ratios ``anchor_i / provider_i`` (the spread);
    ``ci95``: distribution-free 95% interval of the median paired ratio (order statistics), which narrows
    as repeats are added, unlike the spread."""

    value: float
    p25: float
    p75: float
    ci95: tuple[float, float]
    n: int
    anchor: str

    @property
    def rel_spread(self) -> float:
        """Width of the p25-p75 range relative to the ratio."""
        return (self.p75 - self.p25) / self.value if self.value else math.nan

    def to_dict(self) -> dict:
        return {"ratio": self.value, "ratio_p25": self.p25, "ratio_p75": self.p75, "ratio_ci95": list(self.ci95),
                "pairs": self.n, "anchor": self.anchor}

    def __str__(self) -> str:
        return f"{self.value:.2f}x ({self.p25:.2f}-{self.p75:.2f})"


def _median_ci95(sorted_xs: list[float]) -> tuple[float, float]:
    """Order-statistic 95% interval of the median (normal approximation of Binomial(n, 1/2))."""
    n = len(sorted_xs)
    if n == 0:
        return (math.nan, math.nan)
    half = 0.98 * math.sqrt(n)  # 1.96 * sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return (sorted_xs[lo], sorted_xs[hi])


def ratio(anchor: Timing, other: Timing, anchor_name: str) -> Ratio:
    """Speed of ``other`` relative to ``anchor``: ratio of medians, spread from the paired repeats.

    The two timings must come from the same ``time_providers`` call (same n, repeat i interleaved)."""
    if anchor.n != other.n:
        raise ValueError(f"paired ratio needs the same number of repeats, got {anchor.n} and {other.n}")
    pairs = sorted(a / o for a, o in zip(anchor.samples, other.samples))
    return Ratio(anchor.median / other.median, _quantile(pairs, 0.25), _quantile(pairs, 0.75),
                 _median_ci95(pairs), len(pairs), anchor_name)


def time_providers(fns: dict[str, Callable[[], object]], device: str = "cpu", repeats: int = 7, warmup: int = 1,
                   keep_result: bool = False, after_each: Callable[[str], None] | None = None,
                   first_repeat: int = 0) -> dict[str, Timing]:
    """Time every zero-argument callable ``repeats`` times after ``warmup`` untimed calls each.

    Repeat i runs every provider once, starting at provider ``i mod count`` (so each runs first equally
    often), the others after it in an order shuffled by seed ``i`` (so no provider always runs right after
    the same one: after an anchor that allocates and frees a lot, the next call pays for it). CUDA work is
    synchronised before the clock stops. ``keep_result`` keeps the last output of each provider;
    ``after_each(name)`` runs untimed after every timed call (to release what a provider holds);
    ``first_repeat`` continues the order of an earlier call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    last: dict[str, object] = {}
    for i in range(first_repeat, first_repeat + repeats):
        first = names[i % len(names)]
        rest = [n for n in names if n != first]
        random.Random(i).shuffle(rest)
        for name in [first, *rest]:
            start = time.perf_counter()
            out = fns[name]()
            sync(device)
            samples[name].append(time.perf_counter() - start)
            if keep_result:
                last[name] = out
            del out
            if after_each is not None:
                after_each(name)
    return {name: Timing(samples[name], last.get(name)) for name in names}


def time_until(fns: dict[str, Callable[[], object]], pairs: list[tuple[str, str]], device: str = "cpu",
               target_rel_spread: float = 0.05, min_repeats: int = 10, max_repeats: int = 60, step: int = 5,
               warmup: int = 1, max_seconds: float | None = None) -> dict[str, Timing]:
    """``time_providers`` in rounds of ``step`` repeats until every (anchor, provider) pair's paired-ratio
    p25-p75 range is below ``target_rel_spread`` of the ratio (and at least ``min_repeats``), or
    ``max_repeats`` / ``max_seconds`` is reached. The caller reports the spread it got either way."""
    start = time.perf_counter()
    timings = time_providers(fns, device, min_repeats, warmup)
    while True:
        n = next(iter(timings.values())).n
        worst = max(ratio(timings[a], timings[b], a).rel_spread for a, b in pairs)
        if worst < target_rel_spread or n >= max_repeats:
            return timings
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            return timings
        more = time_providers(fns, device, min(step, max_repeats - n), warmup=0, first_repeat=n)
        for name, t in timings.items():
            t.samples.extend(more[name].samples)


def error_bars(centers, lows, highs) -> list[list[float]]:
    """matplotlib's ``yerr`` for bars at ``centers`` spanning ``lows``-``highs``.

    A ratio is anchor median / provider median, its spread the p25-p75 of the paired ratios, so the centre
    may fall outside that range: the bar then shows only the side that reaches past it (never a negative error).
    """
    return [[max(c - lo, 0.0) for c, lo in zip(centers, lows)], [max(hi - c, 0.0) for c, hi in zip(centers, highs)]]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What a figure was measured on (written into every results JSON)."""
    import leanops

    info = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "leanops": getattr(leanops, "__version__", "unknown"),
            "python": platform.python_version(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):  # other processes competing for the cores when the JSON was written
        info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def device_tag(device: str) -> str:
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(0).replace(" ", "-")
    return f"cpu-{torch.get_num_threads()}threads"


def runner_note(family: str, quick: bool) -> str:
    """Names the run a ratio comes from (printed under every table, stored in every JSON)."""
    return f"leanops bench {family}{' --quick' if quick else ''} (leanops.bench.{family}.run; interleaved repeats)"
