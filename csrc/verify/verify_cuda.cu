// CUDA kernels of the verify family. UNTESTED: written without a GPU; see README and build_info().
// Token, length, offset, weight, probability and uniform values are checked by the Python wrapper
// (validate=True): a device-side check would cost a sync. Shapes, dtypes and devices are checked here
// (verify_checks.h). Probabilities are in double so every backend takes the same decisions.
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

// Log-sum-exp of one position's tempered logits z = logit / temperature (float64) over the block. Returns
// false when the position has no distribution: a NaN or +inf z, or every z = -inf. Every thread returns the
// same (the reductions broadcast through shared memory), so the callers' branches stay uniform.
template <typename scalar_t>
__device__ bool row_lse(const scalar_t* row, int64_t v, double temperature, double* shared, double* lse) {
  double m = -INFINITY, bad = 0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const double z = double(row[j]) / temperature;
    if (isnan(z) || z == INFINITY)
      bad = 1;
    else
      m = fmax(m, z);
  }
  bad = block_max(bad, shared);
  m = block_max(m, shared);
  if (bad > 0 || m == -INFINITY) return false;
  double sum = 0;  // -inf (masked) logits add exp(-inf) = 0
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) sum += exp(double(row[j]) / temperature - m);
  *lse = m + log(block_sum(sum, shared));
  return true;
}

// One block per row: accept tests in order up to the first rejection, then an inverse-CDF draw from
// max(0, p - q) (or p). draft_probs is read in its own dtype: q(x_i) per tested position, and the row of a
// rejection.
template <typename scalar_t, typename prob_t>
__global__ void sampling_kernel(const int64_t* cand, const int64_t* lens, const prob_t* q, const scalar_t* logits,
                                const double* u, int64_t s, int64_t v, double temperature, int64_t* accepted,
                                int64_t* next) {
  __shared__ double shared[kThreads];
  const int64_t b = blockIdx.x, n = lens[b];
  const scalar_t* rows = logits + b * (s + 1) * v;
  int64_t a = 0;
  double lse = 0;
  bool defined = true;
  for (; a < n; ++a) {
    defined = row_lse(rows + a * v, v, temperature, shared, &lse);
    if (!defined) break;
    const int64_t tok = cand[b * s + a];
    const double p_x = exp(double(rows[a * v + tok]) / temperature - lse);
    if (!(u[b * (s + 1) + a] * double(q[(b * s + a) * v + tok]) <= p_x)) break;
  }
  if (a == n) defined = row_lse(rows + a * v, v, temperature, shared, &lse);
  if (!defined) {  // no distribution at position a: the sentinel -1 (the Python wrapper raises on it)
    if (threadIdx.x == 0) {
      accepted[b] = a;
      next[b] = -1;
    }
    return;
  }
  const scalar_t* row = rows + a * v;
  const prob_t* qa = a < n ? q + (b * s + a) * v : nullptr;
  double part = 0;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const double p = exp(double(row[j]) / temperature - lse);
    part += qa ? fmax(0.0, p - double(qa[j])) : p;
  }
  double total = block_sum(part, shared);
  const bool use_p = !(total > 0);  // p == q leaves nothing to correct: sample from p
  if (use_p) {
    part = 0;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) part += exp(double(row[j]) / temperature - lse);
    total = block_sum(part, shared);
  }
  // The cumulative sum runs in order on one thread. Its rounding differs from the tree-summed total, so
  // a draw that finds no token past the threshold takes the last token with mass (never a masked one).
  if (threadIdx.x == 0) {
    const double threshold = u[b * (s + 1) + s] * total;
    double cdf = 0;
    int64_t pick = -1, last = -1;
    for (int64_t j = 0; j < v && pick < 0; ++j) {
      const double p = exp(double(row[j]) / temperature - lse);
      const double r = (qa && !use_p) ? fmax(0.0, p - double(qa[j])) : p;
      cdf += r;
      if (r > 0) last = j;
      if (cdf > threshold && r > 0) pick = j;
    }
    accepted[b] = a;
    next[b] = pick >= 0 ? pick : last;
  }
}

// One thread per row: K is small, so the descent is a few dozen steps. A child is "stop here" (the drafts
// ending at this depth) or a next token; stop is a flag of its own, so no token value can be taken for it.
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
    int64_t best_i = -1;  // set by the first alive draft: the set of alive drafts is never empty
    double best_w = 0;
    for (int64_t i = 0; i < k; ++i) {  // each alive draft names its child; weigh each child once
      if (!(alive >> i & 1)) continue;
      const bool stop_i = l[i] == depth;
      const int64_t tok_i = stop_i ? 0 : d[i * s + depth];
      bool first = true;
      for (int64_t j = 0; j < i && first; ++j)
        if ((alive >> j & 1) && (l[j] == depth) == stop_i && (stop_i || d[j * s + depth] == tok_i)) first = false;
      if (!first) continue;
      double cw = 0;
      for (int64_t j = i; j < k; ++j)
        if ((alive >> j & 1) && (l[j] == depth) == stop_i && (stop_i || d[j * s + depth] == tok_i)) cw += wb[j];
      if (best_i < 0 || cw > best_w) {  // children are met in order of their lowest draft index: ties keep the first
        best_w = cw;
        best_i = i;
      }
    }
    if (l[best_i] == depth) {
      win = best_i;  // the lowest index among the drafts that end here
      break;
    }
    const int64_t best_tok = d[best_i * s + depth];
    for (int64_t i = 0; i < k; ++i)
      if ((alive >> i & 1) && !(l[i] > depth && d[i * s + depth] == best_tok)) alive &= ~(1ull << i);
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

std::tuple<at::Tensor, at::Tensor> verify_greedy_ragged_cuda(const at::Tensor& candidates, const at::Tensor& offsets,
                                                             const at::Tensor& target_logits) {
  const int64_t bsz = check_ragged_inputs(candidates, offsets, target_logits);
  const c10::cuda::CUDAGuard guard(candidates.device());
  const int64_t v = target_logits.size(1);
  at::Tensor accepted = at::empty({bsz}, candidates.options()), next = at::empty({bsz}, candidates.options());
  if (bsz == 0) return {accepted, next};
  const at::Tensor c = candidates.contiguous(), off = offsets.contiguous(), lg = target_logits.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_greedy_ragged_cuda", [&] {
    greedy_kernel<scalar_t><<<unsigned(bsz), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        c.data_ptr<int64_t>(), off.data_ptr<int64_t>(), nullptr, lg.data_ptr<scalar_t>(), 0, v, true,
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
  // draft_probs stays in its dtype (only a few of its values are read); the uniforms are small
  const at::Tensor q = draft_probs.contiguous(), u = uniforms.to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_sampling_cuda", [&] {
    using logit_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "verify_sampling_cuda_q", [&] {
      sampling_kernel<logit_t, scalar_t><<<unsigned(bsz), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          c.data_ptr<int64_t>(), l.data_ptr<int64_t>(), q.data_ptr<scalar_t>(), lg.data_ptr<logit_t>(),
          u.data_ptr<double>(), s, v, temperature, accepted.data_ptr<int64_t>(), next.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
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
