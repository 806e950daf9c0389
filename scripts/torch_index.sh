#!/usr/bin/env bash
# Prints the package index that scripts/setup.sh installs torch from (empty: pip's own configuration),
# and on stderr why. PyPI's Linux torch wheels are CUDA builds that pull about 3 GB of nvidia-* libraries,
# so a Linux machine without an NVIDIA driver gets PyTorch's CPU-only index unless told otherwise:
#   LEANOPS_TORCH_INDEX=<url>     that index, e.g. https://download.pytorch.org/whl/cpu (CPU-only wheels)
#                                 or https://download.pytorch.org/whl/cu128 (a given CUDA version)
#   LEANOPS_TORCH_INDEX=default   pip's own configuration (PyPI, or the mirror in your pip.conf)
#   unset                         CPU index on Linux without an NVIDIA driver; pip's own configuration
#                                 elsewhere (macOS and Windows wheels on PyPI are CPU builds already),
#                                 or where pip.conf sets an index-url (a mirror is respected)
set -euo pipefail
cpu_index="https://download.pytorch.org/whl/cpu"
py="${1:-python3}"
if [ -n "${LEANOPS_TORCH_INDEX+set}" ]; then
  if [ "$LEANOPS_TORCH_INDEX" = default ] || [ -z "$LEANOPS_TORCH_INDEX" ]; then
    echo "leanops setup: torch from pip's configured index (LEANOPS_TORCH_INDEX=default)" >&2
  else
    echo "leanops setup: torch from $LEANOPS_TORCH_INDEX (LEANOPS_TORCH_INDEX)" >&2
    echo "$LEANOPS_TORCH_INDEX"
  fi
  exit 0
fi
if [ "$(uname -s)" != Linux ]; then
  echo "leanops setup: torch from pip's configured index ($(uname -s) wheels on PyPI are CPU builds)" >&2
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia/version ]; then
  echo "leanops setup: NVIDIA driver found: torch from pip's configured index (CUDA build)" >&2
  exit 0
fi
if [ -n "${PIP_INDEX_URL:-}" ] || "$py" -m pip config list 2>/dev/null | grep -q '\.index-url='; then
  echo "leanops setup: no NVIDIA driver, but pip has its own index-url (a mirror): using it; set" \
       "LEANOPS_TORCH_INDEX=$cpu_index to force CPU-only wheels" >&2
  exit 0
fi
echo "leanops setup: no NVIDIA driver: CPU-only torch from $cpu_index" \
     "(LEANOPS_TORCH_INDEX=default for pip's own index)" >&2
echo "$cpu_index"
