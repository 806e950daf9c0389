// Scalar rules shared by the CPU and CUDA pool kernels, so both follow the reference's NaN/inf contract
// (docs/DESIGN.md, pool): a -inf logit masks its entry; a NaN or +inf logit makes its (row, head) NaN.
#pragma once

#if defined(__CUDACC__)
#define LEANOPS_POOL_HD __host__ __device__ __forceinline__
#else
#define LEANOPS_POOL_HD inline
#endif

namespace leanops::pool {

// A masked entry takes no part: its weight is 0 and its value is never read.
template <typename acc_t>
LEANOPS_POOL_HD bool masked_logit(acc_t s) {
  return s == -acc_t(INFINITY);
}

// Running max of the online softmax after an unmasked logit s. NaN is sticky (fmax would drop it): once
// the max is NaN every later exp(. - max) is NaN, so the row's out and lse come out NaN.
template <typename acc_t>
LEANOPS_POOL_HD acc_t online_max(acc_t m, acc_t s) {
  return (s > m || s != s) ? s : m;
}

}  // namespace leanops::pool
