#!/usr/bin/env bash
# Prints the package index that scripts/setup.sh installs torch from (empty: pip's own configuration),
# and on stderr why. PyPI's Linux torch wheels are CUDA builds that pull about 3 GB of nvidia-* libraries;
# on a CPU-only Linux machine choose PyTorch's CPU-only index instead:
#   LEANOPS_TORCH_INDEX=cpu       https://download.pytorch.org/whl/cpu (CPU-only wheels, no CUDA libraries)
#   LEANOPS_TORCH_INDEX=<url>     that index, e.g. https://download.pytorch.org/whl/cu128 for a given CUDA
#   unset or default              pip's own configuration (PyPI, or the mirror in your pip.conf). The default,
#                                 because a machine may reach only its configured index; setup.sh warns when
#                                 that gave a CUDA torch on a machine without an NVIDIA driver.
set -euo pipefail
case "${LEANOPS_TORCH_INDEX:-default}" in
  default | "") echo "leanops setup: torch from pip's configured index (LEANOPS_TORCH_INDEX=cpu for CPU-only wheels)" >&2 ;;
  cpu) echo "leanops setup: CPU-only torch (LEANOPS_TORCH_INDEX=cpu)" >&2
       echo "https://download.pytorch.org/whl/cpu" ;;
  *) echo "leanops setup: torch from $LEANOPS_TORCH_INDEX (LEANOPS_TORCH_INDEX)" >&2
     echo "$LEANOPS_TORCH_INDEX" ;;
esac
