// CUDA kernels of the pool family. UNTESTED: written without a GPU; see README and build_info().
// One warp per (row, head): lanes split the head dims, the row's behaviours stream through an online
// softmax; the value accumulator lives in shared memory, so any D and Dv work.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "pool_checks.h"

namespace leanops::pool {
namespace {

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;  // every lane holds the sum
}

template <typename acc_t>
__device__ __forceinline__ acc_t softplus(acc_t x) {
  return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void logit(const scalar_t* q, const scalar_t* k, const scalar_t* bias, const scalar_t* freq,
                                      int64_t t, int64_t h, int64_t H, int64_t D, acc_t scale, acc_t& raw, acc_t& s) {
  acc_t dot = 0;
  for (int64_t i = threadIdx.x; i < D; i += 32) dot += acc_t(q[i]) * acc_t(k[(t * H + h) * D + i]);
  raw = warp_sum(dot) * scale + (bias ? acc_t(bias[t * H + h]) : acc_t(0));
  s = freq ? raw - softplus(raw + acc_t(freq[t * H + h])) : raw;
}

template <typename scalar_t, typename lse_t>
__global__ void pool_fwd_kernel(const scalar_t* q, const scalar_t* k, const scalar_t* v, const int64_t* off,
                                const scalar_t* bias, const scalar_t* freq, const scalar_t* pl, const scalar_t* pv,
                                scalar_t* out, lse_t* lse, int64_t H, int64_t D, int64_t DV, double scale_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char smem[];
  acc_t* acc = reinterpret_cast<acc_t*>(smem);
  const int64_t h = blockIdx.x, b = blockIdx.y, bh = b * H + h;
  const acc_t scale = acc_t(scale_d);
  acc_t m = -INFINITY, l = 0;
  for (int64_t i = threadIdx.x; i < DV; i += 32) acc[i] = pl ? acc_t(pv[bh * DV + i]) : acc_t(0);
  if (pl) {
    m = acc_t(pl[bh]);
    l = 1;
  }
  for (int64_t t = off[b]; t < off[b + 1]; ++t) {
    acc_t raw, s;
    logit(q + bh * D, k, bias, freq, t, h, H, D, scale, raw, s);
    const acc_t m_new = s > m ? s : m;
    const acc_t alpha = l > 0 ? exp(m - m_new) : acc_t(0);
    const acc_t p = s == -INFINITY ? acc_t(0) : exp(s - m_new);
    l = l * alpha + p;
    for (int64_t i = threadIdx.x; i < DV; i += 32) acc[i] = acc[i] * alpha + p * acc_t(v[(t * H + h) * DV + i]);
    m = m_new;
  }
  const acc_t inv = l > 0 ? acc_t(1) / l : acc_t(0);
  for (int64_t i = threadIdx.x; i < DV; i += 32) out[bh * DV + i] = scalar_t(acc[i] * inv);
  if (threadIdx.x == 0) lse[bh] = l > 0 ? lse_t(m + log(l)) : lse_t(-INFINITY);
}

template <typename scalar_t, typename lse_t>
__global__ void pool_bwd_kernel(const scalar_t* go, const lse_t* glse, const scalar_t* q, const scalar_t* k,
                                const scalar_t* v, const int64_t* off, const scalar_t* bias, const scalar_t* freq,
                                const scalar_t* pl, const scalar_t* pv, const scalar_t* out, const lse_t* lse,
                                scalar_t* dq, scalar_t* dk, scalar_t* dv, scalar_t* dbias, scalar_t* dfreq,
                                scalar_t* dpl, scalar_t* dpv, int64_t H, int64_t D, int64_t DV, double scale_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char smem[];
  acc_t* dq_acc = reinterpret_cast<acc_t*>(smem);
  const int64_t h = blockIdx.x, b = blockIdx.y, bh = b * H + h;
  const acc_t scale = acc_t(scale_d), L = acc_t(lse[bh]), gl = glse ? acc_t(glse[bh]) : acc_t(0);
  const bool empty = isinf(L) && L < 0;
  acc_t delta = 0;
  for (int64_t i = threadIdx.x; i < DV; i += 32) delta += acc_t(go[bh * DV + i]) * acc_t(out[bh * DV + i]);
  delta = warp_sum(delta);
  for (int64_t i = threadIdx.x; i < D; i += 32) dq_acc[i] = 0;
  for (int64_t t = off[b]; t < off[b + 1]; ++t) {
    acc_t raw, s;
    logit(q + bh * D, k, bias, freq, t, h, H, D, scale, raw, s);
    const acc_t p = empty ? acc_t(0) : exp(s - L);
    acc_t gv = 0;
    for (int64_t i = threadIdx.x; i < DV; i += 32) {
      const acc_t g = acc_t(go[bh * DV + i]);
      gv += g * acc_t(v[(t * H + h) * DV + i]);
      dv[(t * H + h) * DV + i] = scalar_t(p * g);
    }
    gv = warp_sum(gv);
    const acc_t ds_after = p * (gv - delta) + p * gl;
    acc_t ds = ds_after;
    if (freq) {
      const acc_t x = raw + acc_t(freq[t * H + h]);
      const acc_t sg = acc_t(1) / (acc_t(1) + exp(-x));
      ds = ds_after * (acc_t(1) - sg);
      if (threadIdx.x == 0) dfreq[t * H + h] = scalar_t(-ds_after * sg);
    }
    if (dbias && threadIdx.x == 0) dbias[t * H + h] = scalar_t(ds);
    for (int64_t i = threadIdx.x; i < D; i += 32) {
      dq_acc[i] += scale * ds * acc_t(k[(t * H + h) * D + i]);
      dk[(t * H + h) * D + i] = scalar_t(scale * ds * acc_t(q[bh * D + i]));
    }
  }
  for (int64_t i = threadIdx.x; i < D; i += 32) dq[bh * D + i] = scalar_t(dq_acc[i]);
  if (pl) {
    const acc_t p0 = empty ? acc_t(0) : exp(acc_t(pl[bh]) - L);
    acc_t gv = 0;
    for (int64_t i = threadIdx.x; i < DV; i += 32) {
      const acc_t g = acc_t(go[bh * DV + i]);
      gv += g * acc_t(pv[bh * DV + i]);
      dpv[bh * DV + i] = scalar_t(p0 * g);
    }
    gv = warp_sum(gv);
    if (threadIdx.x == 0) dpl[bh] = scalar_t(p0 * (gv - delta) + p0 * gl);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> jagged_attention_pool_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& offsets, double scale,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& freq_c,
    const c10::optional<at::Tensor>& prior_logit, const c10::optional<at::Tensor>& prior_value) {
  const PoolDims dims = check_pool_inputs(q, k, v, offsets, bias, freq_c, prior_logit, prior_value);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({dims.b, dims.h, dims.dv}, q.options());
  at::Tensor lse = at::empty({dims.b, dims.h}, q.options().dtype(lse_dtype(q)));
  if (dims.b == 0 || dims.h == 0) return {out, lse};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), off = offsets.contiguous();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t smem = size_t(dims.dv) * sizeof(acc_t);
    auto launch = [&](auto* lse_ptr) {
      using lse_t = std::remove_pointer_t<decltype(lse_ptr)>;
      pool_fwd_kernel<scalar_t, lse_t><<<dim3(unsigned(dims.h), unsigned(dims.b)), 32, smem,
                                         c10::cuda::getCurrentCUDAStream()>>>(
          qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(), off.data_ptr<int64_t>(),
          opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf), opt_ptr<scalar_t>(prior_logit, hpl),
          opt_ptr<scalar_t>(prior_value, hpv), out.data_ptr<scalar_t>(), lse_ptr, dims.h, dims.d, dims.dv, scale);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (lse.scalar_type() == at::kDouble)
      launch(lse.data_ptr<double>());
    else
      launch(lse.data_ptr<float>());
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
jagged_attention_pool_backward_cuda(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_lse,
                                    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& offsets, double scale, const c10::optional<at::Tensor>& bias,
                                    const c10::optional<at::Tensor>& freq_c,
                                    const c10::optional<at::Tensor>& prior_logit,
                                    const c10::optional<at::Tensor>& prior_value, const at::Tensor& out,
                                    const at::Tensor& lse) {
  const PoolDims dims = check_pool_backward_inputs(grad_out, grad_lse, q, k, v, offsets, bias, freq_c, prior_logit,
                                                   prior_value, out, lse);
  const c10::cuda::CUDAGuard guard(q.device());
  auto empty = [&] { return at::empty({0}, q.options()); };
  at::Tensor dq = at::empty_like(q, at::MemoryFormat::Contiguous);
  at::Tensor dk = at::zeros_like(k, at::MemoryFormat::Contiguous), dv = at::zeros_like(v, at::MemoryFormat::Contiguous);
  at::Tensor dbias = bias ? at::zeros({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dfreq = freq_c ? at::zeros({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dpl = prior_logit ? at::empty({dims.b, dims.h}, q.options()) : empty();
  at::Tensor dpv = prior_value ? at::empty({dims.b, dims.h, dims.dv}, q.options()) : empty();
  if (dims.b == 0 || dims.h == 0) return {dq, dk, dv, dbias, dfreq, dpl, dpv};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), off = offsets.contiguous();
  const at::Tensor go = grad_out.to(q.scalar_type()).contiguous(), oc = out.contiguous();
  const at::Tensor lc = lse.to(lse_dtype(q)).contiguous();
  const at::Tensor glc = grad_lse ? grad_lse->to(lse_dtype(q)).contiguous() : at::Tensor();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t smem = size_t(dims.d) * sizeof(acc_t);
    auto launch = [&](auto* lse_ptr, auto* glse_ptr) {
      using lse_t = std::remove_const_t<std::remove_pointer_t<decltype(lse_ptr)>>;
      pool_bwd_kernel<scalar_t, lse_t><<<dim3(unsigned(dims.h), unsigned(dims.b)), 32, smem,
                                         c10::cuda::getCurrentCUDAStream()>>>(
          go.data_ptr<scalar_t>(), glse_ptr, qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
          off.data_ptr<int64_t>(), opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf),
          opt_ptr<scalar_t>(prior_logit, hpl), opt_ptr<scalar_t>(prior_value, hpv), oc.data_ptr<scalar_t>(), lse_ptr,
          dq.data_ptr<scalar_t>(), dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(),
          bias ? dbias.data_ptr<scalar_t>() : nullptr, freq_c ? dfreq.data_ptr<scalar_t>() : nullptr,
          prior_logit ? dpl.data_ptr<scalar_t>() : nullptr, prior_value ? dpv.data_ptr<scalar_t>() : nullptr, dims.h,
          dims.d, dims.dv, scale);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (lc.scalar_type() == at::kDouble)
      launch(lc.data_ptr<double>(), glc.defined() ? glc.data_ptr<double>() : static_cast<double*>(nullptr));
    else
      launch(lc.data_ptr<float>(), glc.defined() ? glc.data_ptr<float>() : static_cast<float*>(nullptr));
  });
  return {dq, dk, dv, dbias, dfreq, dpl, dpv};
}

TORCH_LIBRARY_IMPL(leanops, CUDA, lib) {
  lib.impl("jagged_attention_pool", &jagged_attention_pool_cuda);
  lib.impl("jagged_attention_pool_backward", &jagged_attention_pool_backward_cuda);
}

}  // namespace leanops::pool
