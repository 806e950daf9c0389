#!/usr/bin/env bash
# Sets up a virtual environment for leanops and builds it against the torch that is already there.
#   bash scripts/setup.sh [EXTRAS]      EXTRAS: hf (demo, the default), test (tests, benchmarks, CI),
#                                       bench, plot, triton, or several joined by commas (hf,plot)
# The venv sees system packages, so a torch installed on a GPU machine (CUDA build) is used as is;
# only where no torch is importable does it install the tested torch==2.13.0, from the index that
# scripts/torch_index.sh picks: pip's own configuration, or with LEANOPS_TORCH_INDEX=cpu PyTorch's
# CPU-only wheels (no CUDA libraries on a CPU-only Linux machine), or LEANOPS_TORCH_INDEX=<url>.
# leanops is built with --no-build-isolation, so pip never fetches another (CUDA) torch to build with.
#   LEANOPS_VENV=<dir>   where the venv goes (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-hf}"
venv="${LEANOPS_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip setuptools wheel ninja
if "$py" -c "import torch" 2>/dev/null; then
  echo "leanops setup: using installed torch $("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
else
  index="$(bash scripts/torch_index.sh "$py")"
  "$py" -m pip install -q torch==2.13.0 ${index:+--index-url "$index"}
  if [ -z "$index" ] && [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 &&
     "$py" -c "import torch, sys; sys.exit(torch.version.cuda is None)"; then
    echo "leanops setup: WARNING: the configured index gave a CUDA torch on a machine without an NVIDIA" \
         "driver; LEANOPS_TORCH_INDEX=cpu installs the CPU-only wheel instead" >&2
  fi
fi
"$py" -m pip install -q --no-build-isolation ".[$extras]"
"$py" -c "import leanops, json; print(json.dumps({k: v for k, v in leanops.build_info().items() if k != 'parallel_backend'}))"
