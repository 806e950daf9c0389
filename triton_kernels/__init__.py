"""Triton kernels per op family (installed as ``leanops.triton_kernels``); import needs ``triton``."""
