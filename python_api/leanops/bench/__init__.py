"""Benchmark sweeps behind ``leanops bench <family>``: anchor and our backends side by side."""
