// CUDA kernels of the verify family. UNTESTED: written without a GPU; see README and build_info().
// Token and length values are checked by the Python wrapper (validate=True): a device-side check
// would cost a sync. Probabilities are in double so every backend takes the same decisions.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "verify_checks.h"

namespace leanops::verify {
namespace {

constexpr int kThreads = 256;

// Block-wide argmax of one logits row (first maximum; NaN above every number, as torch orders it).
template <typename scalar_t>
__device__ int64_t block_argmax(const scalar_t* row, int64_t v, double* sval, int64_t* sidx) {
  double bv = -INFINITY;
  int64_t bi = v;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const double x = double(row[j]);
    if (bi == v || x > bv || (isnan(x) && !isnan(bv))) {
      bv = x;
      bi = j;
    }
  }
  sval[threadIdx.x] = bv;
  sidx[threadIdx.x] = bi;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const double ov = sval[threadIdx.x + stride];
      const int64_t oi = sidx[threadIdx.x + stride];
      const double cv = sval[threadIdx.x];
      const int64_t ci = sidx[threadIdx.x];
      const bool take = oi != v && (ci == v || ov > cv || (isnan(ov) && !isnan(cv)) ||
                                     ((ov == cv || (isnan(ov) && isnan(cv))) && oi < ci));
      if (take) {
        sval[threadIdx.x] = ov;
        sidx[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const int64_t out = sidx[0];
  __syncthreads();
  return out;
}

// One block per row: read positions in order, stop at the first mismatch.
template <typename scalar_t>
__global__ void greedy_kernel(const int64_t* cand, const int64_t* row_start, const int64_t* lens,
                              const scalar_t* logits, int64_t s, int64_t v, bool ragged, int64_t* accepted,
                              int64_t* next) {
  __shared__ double sval[kThreads];
  __shared__ int64_t sidx[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t c0 = ragged ? row_start[b] : b * s;
  const int64_t n = ragged ? row_start[b + 1] - c0 : lens[b];
  const scalar_t* rows = logits + (ragged ? (c0 + b) : b * (s + 1)) * v;
  int64_t a = 0, t = block_argmax(rows, v, sval, sidx);
  while (a < n && t == cand[c0 + a]) {
    ++a;
    t = block_argmax(rows + a * v, v, sval, sidx);
  }
  if (threadIdx.x == 0) {
    accepted[b] = a;
    next[b] = t;
  }
}

__device__ double block_sum(double x, double* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

__device__ double block_max(double x, double* shared) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  const double m = shared[0];
  __syncthreads();
  return m;
}

template <typename scalar_t>
__device__ double row_lse(const scalar_t* row, int64_t v, double inv_t, double* shared) {
  double m = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) m = fmax(m, double(row[j]) * inv_t);
  m = block_max(m, shared);
  double sum = 0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) sum += exp(double(row[j]) * inv_t - m);
  return m + log(block_sum(sum, shared));
}

// One block per row: accept tests in order, then an inverse-CDF draw from max(0, p - q) (or p).
template <typename scalar_t>
__global__ void sampling_kernel(const int64_t* cand, const int64_t* lens, const double* q, const scalar_t* logits,
                                const double* u, int64_t s, int64_t v, double inv_t, int64_t* accepted,
                                int64_t* next) {
  __shared__ double shared[kThreads];
  __shared__ int64_t pick_shared;
  const int64_t b = blockIdx.x, n = lens[b];
  const scalar_t* rows = logits + b * (s + 1) * v;
  int64_t a = 0;
  double lse = 0;
  for (; a < n; ++a) {
    lse = row_lse(rows + a * v, v, inv_t, shared);
    const int64_t tok = cand[b * s + a];
    const double p_x = exp(double(rows[a * v + tok]) * inv_t - lse);
    if (!(u[b * (s + 1) + a] * q[(b * s + a) * v + tok] <= p_x)) break;
  }
  if (a == n) lse = row_lse(rows + a * v, v, inv_t, shared);
  const scalar_t* row = rows + a * v;
  const double* qa = a < n ? q + (b * s + a) * v : nullptr;
  double part = 0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const double p = exp(double(row[j]) * inv_t - lse);
    part += qa ? fmax(0.0, p - qa[j]) : p;
  }
  double total = block_sum(part, shared);
  const bool use_p = !(total > 0);
  if (use_p) {
    part = 0;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) part += exp(double(row[j]) * inv_t - lse);
    total = block_sum(part, shared);
  }
  // The cumulative sum runs in order on one thread: V reads, as in the CPU kernel (same rounding).
  if (threadIdx.x == 0) {
    const double threshold = u[b * (s + 1) + s] * total;
    double cdf = 0;
    int64_t pick = v - 1;
    for (int64_t j = 0; j < v; ++j) {
      const double p = exp(double(row[j]) * inv_t - lse);
      cdf += (qa && !use_p) ? fmax(0.0, p - qa[j]) : p;
      if (cdf > threshold) {
        pick = j;
        break;
      }
    }
    pick_shared = pick;
    accepted[b] = a;
    next[b] = pick_shared;
  }
}

// One thread per row: K is small, so the descent is a few dozen steps.
__global__ void vote_kernel(const int64_t* drafts, const int64_t* lens, const double* w, int64_t bsz, int64_t k,
                            int64_t s, int64_t w_stride, int64_t* winner, int64_t* cand, int64_t* cand_len) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= bsz) return;
  const int64_t* d = drafts + b * k * s;
  const int64_t* l = lens + b * k;
  const double* wb = w + b * w_stride;
  uint64_t alive = k >= 64 ? ~0ull : ((1ull << k) - 1);  // K <= 64 (checked on the host)
  int64_t win = -1;
  for (int64_t depth = 0; win < 0; ++depth) {
    int64_t best_i = -1;
    double best_w = -1;
    for (int64_t i = 0; i < k; ++i) {  // each alive draft names its child; weigh each child once
      if (!(alive >> i & 1)) continue;
      const int64_t key = l[i] == depth ? -1 : d[i * s + depth];
      bool first = true;
      for (int64_t j = 0; j < i; ++j)
        if ((alive >> j & 1) && (l[j] == depth ? -1 : d[j * s + depth]) == key) first = false;
      if (!first) continue;
      double cw = 0;
      for (int64_t j = i; j < k; ++j)
        if ((alive >> j & 1) && (l[j] == depth ? -1 : d[j * s + depth]) == key) cw += wb[j];
      if (cw > best_w) {  // children are met in order of their lowest draft index: ties keep the first
        best_w = cw;
        best_i = i;
      }
    }
    const int64_t best_key = l[best_i] == depth ? -1 : d[best_i * s + depth];
    if (best_key == -1) {
      win = best_i;
      break;
    }
    for (int64_t i = 0; i < k; ++i)
      if ((alive >> i & 1) && !(l[i] > depth && d[i * s + depth] == best_key)) alive &= ~(1ull << i);
  }
  winner[b] = win;
  cand_len[b] = l[win];
  for (int64_t j = 0; j < s; ++j) cand[b * s + j] = j < l[win] ? d[win * s + j] : 0;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> majority_vote_cuda(const at::Tensor& drafts,
                                                                   const at::Tensor& draft_len,
                                                                   const at::Tensor& weights) {
  check_vote_inputs(drafts, draft_len, weights);
  const c10::cuda::CUDAGuard guard(drafts.device());
  const int64_t bsz = drafts.size(0), k = drafts.size(1), s = drafts.size(2);
  TORCH_CHECK(k <= 64, "the CUDA majority_vote supports K <= 64 drafts, got ", k);
  at::Tensor winner = at::empty({bsz}, drafts.options()), cand = at::empty({bsz, s}, drafts.options());
  at::Tensor cand_len = at::empty({bsz}, drafts.options());
  if (bsz == 0) return {winner, cand, cand_len};
  const at::Tensor d = drafts.contiguous(), l = draft_len.contiguous(), w = weights.to(at::kDouble).contiguous();
  vote_kernel<<<unsigned((bsz + 127) / 128), 128, 0, c10::cuda::getCurrentCUDAStream()>>>(
      d.data_ptr<int64_t>(), l.data_ptr<int64_t>(), w.data_ptr<double>(), bsz, k, s, weights.dim() == 1 ? 0 : k,
      winner.data_ptr<int64_t>(), cand.data_ptr<int64_t>(), cand_len.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {winner, cand, cand_len};
}

std::tuple<at::Tensor, at::Tensor> verify_greedy_cuda(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                                      const at::Tensor& target_logits) {
  check_verify_inputs(candidate, candidate_len, target_logits);
  const c10::cuda::CUDAGuard guard(candidate.device());
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  at::Tensor accepted = at::empty({bsz}, candidate.options()), next = at::empty({bsz}, candidate.options());
  if (bsz == 0) return {accepted, next};
  const at::Tensor c = candidate.contiguous(), l = candidate_len.contiguous(), lg = target_logits.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_greedy_cuda", [&] {
    greedy_kernel<scalar_t><<<unsigned(bsz), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c.data_ptr<int64_t>(), nullptr, l.data_ptr<int64_t>(), lg.data_ptr<scalar_t>(), s, v, false,
        accepted.data_ptr<int64_t>(), next.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {accepted, next};
}

std::tuple<at::Tensor, at::Tensor> verify_greedy_ragged_cuda(const at::Tensor& candidates, const at::Tensor& cu_lens,
                                                             const at::Tensor& target_logits) {
  const int64_t bsz = check_ragged_inputs(candidates, cu_lens, target_logits), t_total = candidates.size(0);
  const c10::cuda::CUDAGuard guard(candidates.device());
  const int64_t v = target_logits.size(1);
  at::Tensor accepted = at::empty({bsz}, candidates.options()), next = at::empty({bsz}, candidates.options());
  if (bsz == 0) return {accepted, next};
  const at::Tensor c = candidates.contiguous(), cu = cu_lens.contiguous(), lg = target_logits.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_greedy_ragged_cuda", [&] {
    greedy_kernel<scalar_t><<<unsigned(bsz), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c.data_ptr<int64_t>(), cu.data_ptr<int64_t>(), nullptr, lg.data_ptr<scalar_t>(), 0, v, true,
        accepted.data_ptr<int64_t>(), next.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {accepted, next};
}

std::tuple<at::Tensor, at::Tensor> verify_sampling_cuda(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                                        const at::Tensor& draft_probs,
                                                        const at::Tensor& target_logits, double temperature,
                                                        const at::Tensor& uniforms) {
  check_sampling_inputs(candidate, candidate_len, draft_probs, target_logits, temperature, uniforms);
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  const c10::cuda::CUDAGuard guard(candidate.device());
  at::Tensor accepted = at::empty({bsz}, candidate.options()), next = at::empty({bsz}, candidate.options());
  if (bsz == 0) return {accepted, next};
  const at::Tensor c = candidate.contiguous(), l = candidate_len.contiguous(), lg = target_logits.contiguous();
  const at::Tensor q = draft_probs.to(at::kDouble).contiguous(), u = uniforms.to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_sampling_cuda", [&] {
    sampling_kernel<scalar_t><<<unsigned(bsz), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c.data_ptr<int64_t>(), l.data_ptr<int64_t>(), q.data_ptr<double>(), lg.data_ptr<scalar_t>(),
        u.data_ptr<double>(), s, v, 1.0 / temperature, accepted.data_ptr<int64_t>(), next.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {accepted, next};
}

TORCH_LIBRARY_IMPL(leanops, CUDA, lib) {
  lib.impl("majority_vote", &majority_vote_cuda);
  lib.impl("verify_greedy", &verify_greedy_cuda);
  lib.impl("verify_greedy_ragged", &verify_greedy_ragged_cuda);
  lib.impl("verify_sampling", &verify_sampling_cuda);
}

}  // namespace leanops::verify
