"""jagged_attention_pool: every bad input gets a clear error naming the argument, on every backend
(through the public function) and from the compiled ops themselves (forward and backward)."""
import pytest
import torch
from conftest import BACKENDS
from test_pool_ops import make_case

import leanops
from leanops import _library

IDS = [f"{b}-{d}" for b, d in BACKENDS]


def _good():
    """B=3 rows of lengths 2, 0, 3 (T=5), H=2, D=4, Dv=3, every optional input."""
    return make_case([2, 0, 3], 2, 4, 3, torch.float32, "cpu", 0, True, True, True)


BAD = [  # (change, message, exception type)
    (dict(offsets=torch.tensor([1, 2, 2, 5])), "offsets must start at 0, got 1", ValueError),
    (dict(offsets=torch.tensor([0, 3, 2, 5])), r"offsets must be non-decreasing: offsets\[2\] = 2 < offsets\[1\]",
     ValueError),
    (dict(offsets=torch.tensor([0, 2, 2, 4])), "offsets must end at T = 5, got 4", ValueError),
    (dict(offsets=torch.tensor([0, 2, 2, 6])), "offsets must end at T = 5, got 6", ValueError),
    (dict(offsets=torch.tensor([0, 2, 5])), r"offsets must be 1-D \[B\+1\] = \[4\]", ValueError),
    (dict(offsets=torch.tensor([[0, 2, 2, 5]])), r"offsets must be 1-D \[B\+1\]", ValueError),
    (dict(offsets=torch.tensor([0, 2, 2, 5], dtype=torch.int32)), "offsets must be int64, got torch.int32", TypeError),
    (dict(offsets=[0, 2, 2, 5]), "offsets must be a torch.Tensor", TypeError),
    (dict(offsets=torch.tensor([0, 2, 2, 5], device="meta")), "offsets is on meta but q is on cpu", ValueError),
    (dict(q=torch.randn(3, 2)), r"q must be 3-D \[B, H, D\]", ValueError),
    (dict(q=torch.randint(0, 2, (3, 2, 4))), "q must be float32, float64, float16 or bfloat16", TypeError),
    (dict(q="q"), "q must be a torch.Tensor", TypeError),
    (dict(k=torch.randn(5, 2)), r"k must be 3-D \[T, H, D\]", ValueError),
    (dict(k=torch.randn(5, 2, 5)), r"k must be \[T, H=2, D=4\]", ValueError),
    (dict(k=torch.randn(5, 3, 4)), r"k must be \[T, H=2, D=4\]", ValueError),
    (dict(k=torch.randn(5, 2, 4, dtype=torch.float64)), "k must have q's dtype torch.float32", TypeError),
    (dict(k=torch.randn(5, 2, 4, device="meta")), "k is on meta but q is on cpu", ValueError),
    (dict(v=torch.randn(4, 2, 3)), r"v must be \[T=5, H=2, Dv\]", ValueError),
    (dict(v=torch.randn(5, 2)), r"v must be 3-D \[T, H, Dv\]", ValueError),
    (dict(v=torch.randn(5, 2, 3, dtype=torch.float16)), "v must have q's dtype", TypeError),
    (dict(bias=torch.randn(5, 3)), r"bias must be \[5, 2\]", ValueError),
    (dict(bias=torch.randn(5, 2, dtype=torch.float64)), "bias must have q's dtype", TypeError),
    (dict(bias=torch.randn(5, 2, device="meta")), "bias is on meta but q is on cpu", ValueError),
    (dict(bias=1.0), "bias must be a torch.Tensor", TypeError),
    (dict(freq_c=torch.randn(4, 2)), r"freq_c must be \[5, 2\]", ValueError),
    (dict(freq_c=torch.randn(5, 2, dtype=torch.bfloat16)), "freq_c must have q's dtype", TypeError),
    (dict(prior_logit=torch.randn(3)), r"prior_logit must be \[3, 2\]", ValueError),
    (dict(prior_value=torch.randn(3, 2, 4)), r"prior_value must be \[3, 2, 3\]", ValueError),
    (dict(prior_value=torch.randn(3, 2, 3, dtype=torch.float64)), "prior_value must have q's dtype", TypeError),
    (dict(prior_value=None), "prior_logit and prior_value must be given together", ValueError),
    (dict(prior_logit=None), "prior_logit and prior_value must be given together", ValueError),
    (dict(scale="1"), "scale must be a float, got str", TypeError),
    (dict(scale=True), "scale must be a float, got bool", TypeError),
    (dict(scale=float("nan")), "scale must be finite, got nan", ValueError),
    (dict(scale=float("inf")), "scale must be finite, got inf", ValueError),
]


@pytest.mark.parametrize("backend", BACKENDS, ids=IDS)
@pytest.mark.parametrize("change,msg,exc", BAD, ids=[m[:40] for _, m, _ in BAD])
def test_bad_input(backend, change, msg, exc):
    args = {**_good(), **change}
    with pytest.raises(exc, match=msg):
        leanops.jagged_attention_pool(*args.values(), backend=backend[0])


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        leanops.jagged_attention_pool(*_good().values(), backend="gpu")


def test_validate_false_skips_only_the_offsets_scan():
    """validate=False (for callers that built the offsets) still checks shapes, dtypes and devices."""
    args = {**_good(), "offsets": torch.tensor([0, 2, 2, 5], dtype=torch.int32)}
    with pytest.raises(TypeError, match="offsets must be int64"):
        leanops.jagged_attention_pool(*args.values(), validate=False)
    out, _ = leanops.jagged_attention_pool(*_good().values(), validate=False)
    assert out.shape == (3, 2, 3)


# ----------------------------------------------------------------------------- the compiled ops themselves
RAW = [  # every message of csrc/pool/pool_checks.h that the public function would catch first
    (dict(offsets=torch.tensor([1, 2, 2, 5])), "offsets must start at 0, got 1"),
    (dict(offsets=torch.tensor([0, 3, 2, 5])), r"offsets must be non-decreasing: offsets\[2\] = 2 < offsets\[1\] = 3"),
    (dict(offsets=torch.tensor([0, 2, 2, 4])), "offsets must end at T = 5, got 4"),
    (dict(offsets=torch.tensor([0, 2, 5])), r"offsets must be 1-D \[B\+1\] = \[4\]"),
    (dict(offsets=torch.tensor([0, 2, 2, 5], dtype=torch.int32)), "offsets must be int64, got Int"),
    (dict(q=torch.randn(3, 2)), r"q must be 3-D \[B, H, D\]"),
    (dict(q=torch.randint(0, 2, (3, 2, 4))), "q must be float32, float64, float16 or bfloat16"),
    (dict(k=torch.randn(5, 2)), r"k must be 3-D \[T, H, D\]"),
    (dict(k=torch.randn(5, 2, 5)), r"k must be \[T, H=2, D=4\]"),
    (dict(k=torch.randn(5, 2, 4, dtype=torch.float64)), "k must have q's dtype Float, got Double"),
    (dict(v=torch.randn(4, 2, 3)), r"v must be \[T=5, H=2, Dv\]"),
    (dict(v=torch.randn(5, 2, 3, dtype=torch.float64)), "v must have q's dtype Float, got Double"),
    (dict(bias=torch.randn(5, 3)), r"bias must have shape \[5, 2\]"),
    (dict(freq_c=torch.randn(5, 2, dtype=torch.float64)), "freq_c must have q's dtype"),
    (dict(prior_logit=torch.randn(3)), r"prior_logit must have shape \[3, 2\]"),
    (dict(prior_value=torch.randn(3, 2, 4)), r"prior_value must have shape \[3, 2, 3\]"),
    (dict(prior_value=None), "prior_logit and prior_value must be given together"),
    (dict(scale=float("nan")), "scale must be finite"),
]

compiled = pytest.mark.skipif(not _library.compiled_available(), reason="compiled library not built")


@compiled
@pytest.mark.parametrize("change,msg", RAW, ids=[m[:40] for _, m in RAW])
def test_raw_op_bad_input(change, msg):
    args = {**_good(), **change}
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.jagged_attention_pool(*args.values())


@compiled
@pytest.mark.parametrize("change,msg", RAW, ids=[m[:40] for _, m in RAW])
def test_raw_backward_op_bad_input(change, msg):
    good = _good()
    out, lse = torch.ops.leanops.jagged_attention_pool(*good.values())
    args = {**good, **change}
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.jagged_attention_pool_backward(torch.ones_like(out), torch.ones_like(lse), *args.values(),
                                                         out, lse)


BACKWARD_ONLY = [  # (grad_out, grad_lse, out, lse) replacements
    (dict(grad_out=torch.ones(3, 2, 4)), r"grad_out must have out's shape \[3, 2, 3\]"),
    (dict(out=torch.ones(3, 2)), r"out must be \[B=3, H=2, Dv=3\]"),
    (dict(lse=torch.ones(3)), r"lse must be \[B=3, H=2\]"),
    (dict(grad_lse=torch.ones(2, 2)), r"grad_lse must have lse's shape \[3, 2\]"),
    (dict(grad_out=torch.ones(3, 2, 3, dtype=torch.long)), "grad_out must be a floating tensor"),
    (dict(lse=torch.ones(3, 2, dtype=torch.long)), "lse must be a floating tensor"),
]


@compiled
@pytest.mark.parametrize("change,msg", BACKWARD_ONLY, ids=[m[:40] for _, m in BACKWARD_ONLY])
def test_raw_backward_op_bad_gradients(change, msg):
    good = _good()
    out, lse = torch.ops.leanops.jagged_attention_pool(*good.values())
    extra = {"grad_out": torch.ones_like(out), "grad_lse": torch.ones_like(lse), "out": out, "lse": lse, **change}
    with pytest.raises(RuntimeError, match=msg):
        torch.ops.leanops.jagged_attention_pool_backward(extra["grad_out"], extra["grad_lse"], *good.values(),
                                                         extra["out"], extra["lse"])
