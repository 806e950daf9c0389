"""Timing helpers shared by the sweeps: median wall time, CUDA-synchronised where needed."""
from __future__ import annotations

import platform
import statistics
import time

import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn, device: str = "cpu", repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def device_tag(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0).replace(" ", "-")
    return f"cpu-{torch.get_num_threads()}threads"
