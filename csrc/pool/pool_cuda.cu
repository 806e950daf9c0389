// CUDA kernels of the pool family. UNTESTED: written without a GPU; see README and build_info().
// One warp per (row, head): lanes split the head dims, the row's behaviours stream through an online
// softmax; the value accumulator lives in shared memory, in chunks of at most 48 KB (pool_launch.h), so
// any D and Dv work. (row, head) pairs are on gridDim.x with a grid-stride loop, so any B works.
// NaN/inf follow the reference's contract through the rules of pool_math.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "pool_checks.h"
#include "pool_launch.h"
#include "pool_math.h"

namespace leanops::pool {
namespace {

constexpr int kWarp = 32;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  // butterfly: every lane ends with the same bits, so branches on the result are warp-uniform
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;
}

template <typename acc_t>
__device__ __forceinline__ acc_t softplus(acc_t x) {
  return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

// Logit of behaviour t (head h) against q_row (the row's [D] query of that head), on every lane.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void logit(const scalar_t* q_row, const scalar_t* k, const scalar_t* bias,
                                      const scalar_t* freq, int64_t t, int64_t h, int64_t H, int64_t D, acc_t scale,
                                      acc_t& raw, acc_t& s) {
  const scalar_t* k_row = k + (t * H + h) * D;
  acc_t dot = 0;
  for (int64_t i = threadIdx.x; i < D; i += kWarp) dot += acc_t(q_row[i]) * acc_t(k_row[i]);
  raw = warp_sum(dot) * scale + (bias ? acc_t(bias[t * H + h]) : acc_t(0));
  s = freq ? raw - softplus(raw + acc_t(freq[t * H + h])) : raw;
}

// One entry of the online softmax over acc[0, n) (this pass's chunk of the values). l == 0: nothing summed yet.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void online_add(acc_t s, const scalar_t* value, int64_t n, acc_t* acc, acc_t& m,
                                           acc_t& l) {
  if (masked_logit(s)) return;  // masked: the value is not read
  const acc_t m_new = online_max(m, s);
  const acc_t alpha = (l != 0 && !(m_new == m)) ? exp(m - m_new) : acc_t(1);
  const acc_t p = exp(s - m_new);  // NaN for a NaN or +inf logit
  l = l * alpha + p;
  for (int64_t i = threadIdx.x; i < n; i += kWarp) acc[i] = acc[i] * alpha + p * acc_t(value[i]);
  m = m_new;
}

template <typename scalar_t, typename lse_t>
__global__ void pool_fwd_kernel(const scalar_t* q, const scalar_t* k, const scalar_t* v, const int64_t* off,
                                const scalar_t* bias, const scalar_t* freq, const scalar_t* pl, const scalar_t* pv,
                                scalar_t* out, lse_t* lse, int64_t pairs, int64_t H, int64_t D, int64_t DV,
                                int64_t chunk, int64_t passes, double scale_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char smem[];
  acc_t* acc = reinterpret_cast<acc_t*>(smem);
  const acc_t scale = acc_t(scale_d);
  for (int64_t bh = blockIdx.x; bh < pairs; bh += gridDim.x) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t pass = 0; pass < passes; ++pass) {  // Dv in chunks; the logits are recomputed per chunk
      const int64_t c0 = pass * chunk, n = min(chunk, DV - c0);
      for (int64_t i = threadIdx.x; i < n; i += kWarp) acc[i] = 0;
      acc_t m = -INFINITY, l = 0;
      if (pl) online_add(acc_t(pl[bh]), pv + bh * DV + c0, n, acc, m, l);  // the prior is one more entry
      for (int64_t t = off[b]; t < off[b + 1]; ++t) {
        acc_t raw, s;
        logit(q + bh * D, k, bias, freq, t, h, H, D, scale, raw, s);
        online_add(s, v + (t * H + h) * DV + c0, n, acc, m, l);
      }
      // l == 0: every entry masked (or none): out 0, lse -inf; else l >= 1, or NaN for a NaN row
      const acc_t inv = l == 0 ? acc_t(0) : acc_t(1) / l;
      for (int64_t i = threadIdx.x; i < n; i += kWarp) out[bh * DV + c0 + i] = scalar_t(l == 0 ? acc_t(0) : acc[i] * inv);
      if (pass == 0 && threadIdx.x == 0) lse[bh] = l == 0 ? lse_t(-INFINITY) : lse_t(m + log(l));
      __syncwarp();  // the next pass reuses acc
    }
  }
}

// Recomputes each probability from lse; every behaviour belongs to one row, so dk/dv need no atomics. dq
// accumulates in shared memory, D in chunks; dv, dbias, dfreq and the prior's gradients are written on the
// first pass. A masked entry has p = 0, ds = 0 and its value is not read (dk/dq still take 0 * q and 0 * k,
// as autograd does).
template <typename scalar_t, typename lse_t>
__global__ void pool_bwd_kernel(const scalar_t* go, const lse_t* glse, const scalar_t* q, const scalar_t* k,
                                const scalar_t* v, const int64_t* off, const scalar_t* bias, const scalar_t* freq,
                                const scalar_t* pl, const scalar_t* pv, const scalar_t* out, const lse_t* lse,
                                scalar_t* dq, scalar_t* dk, scalar_t* dv, scalar_t* dbias, scalar_t* dfreq,
                                scalar_t* dpl, scalar_t* dpv, int64_t pairs, int64_t H, int64_t D, int64_t DV,
                                int64_t chunk, int64_t passes, double scale_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char smem[];
  acc_t* dq_acc = reinterpret_cast<acc_t*>(smem);
  const acc_t scale = acc_t(scale_d);
  for (int64_t bh = blockIdx.x; bh < pairs; bh += gridDim.x) {
    const int64_t b = bh / H, h = bh % H;
    const acc_t L = acc_t(lse[bh]), gl = glse ? acc_t(glse[bh]) : acc_t(0);
    acc_t delta = 0;  // dout . out
    for (int64_t i = threadIdx.x; i < DV; i += kWarp) delta += acc_t(go[bh * DV + i]) * acc_t(out[bh * DV + i]);
    delta = warp_sum(delta);
    for (int64_t pass = 0; pass < passes; ++pass) {
      const int64_t c0 = pass * chunk, n = min(chunk, D - c0);
      const bool first = pass == 0;
      for (int64_t i = threadIdx.x; i < n; i += kWarp) dq_acc[i] = 0;
      for (int64_t t = off[b]; t < off[b + 1]; ++t) {
        acc_t raw, s;
        logit(q + bh * D, k, bias, freq, t, h, H, D, scale, raw, s);
        const int64_t th = t * H + h;
        acc_t ds_after = 0;  // d loss / d s (after the frequency transform)
        if (masked_logit(s)) {  // warp-uniform: s is the same on every lane
          if (first)
            for (int64_t i = threadIdx.x; i < DV; i += kWarp) dv[th * DV + i] = scalar_t(0);
        } else {
          const acc_t p = exp(s - L);
          acc_t gv = 0;
          for (int64_t i = threadIdx.x; i < DV; i += kWarp) {
            const acc_t g = acc_t(go[bh * DV + i]);
            gv += g * acc_t(v[th * DV + i]);
            if (first) dv[th * DV + i] = scalar_t(p * g);
          }
          gv = warp_sum(gv);
          ds_after = p * (gv - delta) + p * gl;
        }
        acc_t ds = ds_after;
        if (freq) {
          const acc_t x = raw + acc_t(freq[th]);
          const acc_t sg = acc_t(1) / (acc_t(1) + exp(-x));
          ds = ds_after * (acc_t(1) - sg);
          if (first && threadIdx.x == 0) dfreq[th] = scalar_t(-ds_after * sg);
        }
        if (dbias && first && threadIdx.x == 0) dbias[th] = scalar_t(ds);
        for (int64_t i = threadIdx.x; i < n; i += kWarp) {
          dq_acc[i] += scale * ds * acc_t(k[th * D + c0 + i]);
          dk[th * D + c0 + i] = scalar_t(scale * ds * acc_t(q[bh * D + c0 + i]));
        }
      }
      for (int64_t i = threadIdx.x; i < n; i += kWarp) dq[bh * D + c0 + i] = scalar_t(dq_acc[i]);
      __syncwarp();  // the next pass reuses dq_acc
    }
    if (pl) {
      const acc_t s0 = acc_t(pl[bh]);
      const bool masked = masked_logit(s0);  // a masked prior's value is not read
      const acc_t p0 = masked ? acc_t(0) : exp(s0 - L);
      acc_t gv = 0;
      for (int64_t i = threadIdx.x; i < DV; i += kWarp) {
        const acc_t g = acc_t(go[bh * DV + i]);
        if (!masked) gv += g * acc_t(pv[bh * DV + i]);
        dpv[bh * DV + i] = scalar_t(p0 * g);
      }
      gv = warp_sum(gv);
      if (threadIdx.x == 0) dpl[bh] = scalar_t(masked ? acc_t(0) : p0 * (gv - delta) + p0 * gl);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> jagged_attention_pool_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& offsets, double scale,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& freq_c,
    const c10::optional<at::Tensor>& prior_logit, const c10::optional<at::Tensor>& prior_value) {
  const PoolDims dims = check_pool_inputs(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({dims.b, dims.h, dims.dv}, q.options());
  at::Tensor lse = at::empty({dims.b, dims.h}, q.options().dtype(lse_dtype(q)));
  if (dims.b == 0 || dims.h == 0) return {out, lse};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), off = offsets.contiguous();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const PoolLaunch cfg = pool_launch(dims.b * dims.h, dims.dv, sizeof(acc_t));
    auto launch = [&](auto* lse_ptr) {
      using lse_t = std::remove_pointer_t<decltype(lse_ptr)>;
      pool_fwd_kernel<scalar_t, lse_t><<<dim3(unsigned(cfg.blocks)), kWarp, size_t(cfg.smem_bytes),
                                         c10::cuda::getCurrentCUDAStream()>>>(
          qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(), off.data_ptr<int64_t>(),
          opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf), opt_ptr<scalar_t>(prior_logit, hpl),
          opt_ptr<scalar_t>(prior_value, hpv), out.data_ptr<scalar_t>(), lse_ptr, dims.b * dims.h, dims.h, dims.d,
          dims.dv, cfg.chunk, cfg.passes, scale);
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
  const PoolDims dims = check_pool_backward_inputs(grad_out, grad_lse, q, k, v, offsets, scale, bias, freq_c,
                                                   prior_logit, prior_value, out, lse);
  const c10::cuda::CUDAGuard guard(q.device());
  auto empty = [&] { return at::empty({0}, q.options()); };  // a fresh one each: outputs must not alias
  at::Tensor dq = at::empty({dims.b, dims.h, dims.d}, q.options());
  // zero-filled: every behaviour is written by its row's block, but zeros keep unvisited ones defined
  at::Tensor dk = at::zeros({dims.t, dims.h, dims.d}, q.options());
  at::Tensor dv = at::zeros({dims.t, dims.h, dims.dv}, q.options());
  at::Tensor dbias = bias ? at::zeros({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dfreq = freq_c ? at::zeros({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dpl = prior_logit ? at::empty({dims.b, dims.h}, q.options()) : empty();
  at::Tensor dpv = prior_value ? at::empty({dims.b, dims.h, dims.dv}, q.options()) : empty();
  if (dims.b == 0 || dims.h == 0) return {dq, dk, dv, dbias, dfreq, dpl, dpv};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), off = offsets.contiguous();
  const at::Tensor go = grad_out.to(q.scalar_type()).contiguous(), oc = out.to(q.scalar_type()).contiguous();
  const at::Tensor lc = lse.to(lse_dtype(q)).contiguous();
  const at::Tensor glc = grad_lse ? grad_lse->to(lse_dtype(q)).contiguous() : at::Tensor();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const PoolLaunch cfg = pool_launch(dims.b * dims.h, dims.d, sizeof(acc_t));
    auto launch = [&](auto* lse_ptr, auto* glse_ptr) {
      using lse_t = std::remove_const_t<std::remove_pointer_t<decltype(lse_ptr)>>;
      pool_bwd_kernel<scalar_t, lse_t><<<dim3(unsigned(cfg.blocks)), kWarp, size_t(cfg.smem_bytes),
                                         c10::cuda::getCurrentCUDAStream()>>>(
          go.data_ptr<scalar_t>(), glse_ptr, qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
          off.data_ptr<int64_t>(), opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf),
          opt_ptr<scalar_t>(prior_logit, hpl), opt_ptr<scalar_t>(prior_value, hpv), oc.data_ptr<scalar_t>(), lse_ptr,
          dq.data_ptr<scalar_t>(), dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(),
          bias ? dbias.data_ptr<scalar_t>() : nullptr, freq_c ? dfreq.data_ptr<scalar_t>() : nullptr,
          prior_logit ? dpl.data_ptr<scalar_t>() : nullptr, prior_value ? dpv.data_ptr<scalar_t>() : nullptr,
          dims.b * dims.h, dims.h, dims.d, dims.dv, cfg.chunk, cfg.passes, scale);
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
