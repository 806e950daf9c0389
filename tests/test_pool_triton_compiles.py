"""The pool Triton kernels compile for a GPU (sm_90) where none is present: the interpreter runs code that
the compiler may reject (types of loop indices, int64 casts, masks), so the compiled path is checked too.
The compile runs in a subprocess without TRITON_INTERPRET (under it, @triton.jit makes interpreter objects)."""
import os
import subprocess
import sys

import pytest

from leanops import _backend


def _can_compile_for_cuda():
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def compile_pool_kernels(index: str) -> None:
    """Compiles the forward and backward kernels (fp32, every option on) to PTX for sm_90."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from leanops.triton_kernels import pool

    def build(kernel, signature, constexprs):
        sig = {**signature, **{k: "constexpr" for k in constexprs}}
        src = ASTSource(kernel, signature=sig, constexprs={(list(sig).index(k),): v for k, v in constexprs.items()})
        return triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]

    p = "*fp32"
    sizes = {k: index for k in ("pairs", "H", "D", "DV", "d_passes", "dv_passes")}
    consts = dict(HAS_BIAS=True, HAS_FREQ=True, HAS_PRIOR=True, BLOCK_T=32, BLOCK_D=128, BLOCK_DV=128, ACC=tl.float32)
    fwd = {"q_ptr": p, "k_ptr": p, "v_ptr": p, "off_ptr": "*i64", "bias_ptr": p, "freq_ptr": p, "pl_ptr": p,
           "pv_ptr": p, "out_ptr": p, "lse_ptr": p, **sizes, "scale": "fp32"}
    assert "ld.global" in build(pool._pool_fwd_kernel, fwd, consts)
    bwd = {"go_ptr": p, "gl_ptr": p, "q_ptr": p, "k_ptr": p, "v_ptr": p, "off_ptr": "*i64", "bias_ptr": p,
           "freq_ptr": p, "pl_ptr": p, "pv_ptr": p, "out_ptr": p, "lse_ptr": p, "dq_ptr": p, "dk_ptr": p, "dv_ptr": p,
           "dbias_ptr": p, "dfreq_ptr": p, "dpl_ptr": p, "dpv_ptr": p, **sizes, "scale": "fp32"}
    assert "st.global" in build(pool._pool_bwd_kernel, bwd, dict(HAS_GLSE=True, **consts))


@pytest.mark.skipif(not _backend.triton_available() or not _can_compile_for_cuda(),
                    reason="triton or its NVIDIA backend is missing")
def test_pool_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # i32 sizes, and i64 as triton passes sizes >= 2^31
    code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_pool_triton_compiles as t; " \
           "t.compile_pool_kernels('i32'); t.compile_pool_kernels('i64'); print('compiled')"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "compiled" in res.stdout, res.stderr[-3000:]
