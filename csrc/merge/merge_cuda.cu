// CUDA kernels of the merge family. UNTESTED: written without a GPU; see README and build_info().
// Launches: grid-stride loops over gridDim.x (common/grid_stride.h), so any batch size works.
// Same contracts as merge_cpu.cpp. Shapes and dtypes are checked here; index values are checked by the
// Python wrapper (validate=True), since a device-side check would cost a sync.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/grid_stride.h"
#include "merge_checks.h"

namespace leanops::merge {
namespace {

constexpr int kThreads = 256;

// The score order of DESIGN.md: NaN above every number (as torch.sort), NaN ties with NaN; with the index
// breaking ties, (score, index) is a strict total order. (nvcc's --use_fast_math keeps isnan: it flushes
// denormals and approximates division and sqrt, but does not assume finite values.)
template <typename acc_t>
__device__ __forceinline__ bool beats(acc_t a, acc_t b) {
  if (isnan(a)) return !isnan(b);
  return !isnan(b) && a > b;
}

// Every kernel below is a grid-stride loop over a flat range of work items on gridDim.x (see
// common/grid_stride.h): the batch is never on gridDim.y (capped at 65535), and every index is int64.

// One warp per A row (row = b * na + i): the best B partner, lowest index on ties, NaN above every number.
template <typename acc_t>
__global__ void best_match_kernel(const acc_t* __restrict__ scores, int64_t rows, int64_t nb, acc_t* best,
                                  int64_t* arg) {
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  const int lane = threadIdx.x % 32;
  // The loop is warp-uniform (all lanes share `row`), so the full-mask shuffles below are safe.
  for (int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; row < rows; row += warps) {
    const acc_t* srow = scores + row * nb;
    acc_t bv = -INFINITY;
    int64_t bj = nb;  // "none yet"
    for (int64_t j = lane; j < nb; j += 32) {
      const acc_t v = srow[j];
      if (bj == nb || beats(v, bv)) {  // strict: the lane's earlier j keeps ties
        bv = v;
        bj = j;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const acc_t ov = __shfl_down_sync(0xffffffff, bv, offset);
      const int64_t oj = __shfl_down_sync(0xffffffff, bj, offset);
      // (score, index) order: the other lane wins if its score beats ours, or ties (NaN with NaN
      // included) with a lower index.
      const bool take = oj != nb && (bj == nb || beats(ov, bv) || (!beats(bv, ov) && oj < bj));
      if (take) {
        bv = ov;
        bj = oj;
      }
    }
    if (lane == 0) {
      best[row] = bv;
      arg[row] = bj == nb ? 0 : bj;
    }
  }
}

// rank_i = #{j: best_j beats best_i, or ties with j < i}: a strict total order, so ranks are a
// permutation of 0..na-1 even with NaN and ties; the top r become (src, dst) in rank order.
template <typename acc_t>
__global__ void rank_place_kernel(const acc_t* best, const int64_t* arg, int64_t* rank, int64_t bsz, int64_t na,
                                  int64_t r, int64_t first_a, int64_t first_b, int64_t* src, int64_t* dst) {
  const int64_t items = bsz * na, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += stride) {
    const int64_t b = item / na, i = item % na;
    const acc_t* row = best + b * na;
    const acc_t bi = row[i];
    int64_t k = 0;
    for (int64_t j = 0; j < na; ++j) {
      const acc_t bj = row[j];
      k += beats(bj, bi) || (!beats(bi, bj) && j < i);
    }
    rank[item] = k;
    if (k < r) {
      src[b * r + k] = first_a + 2 * i;
      dst[b * r + k] = first_b + 2 * arg[item];
    }
  }
}

// Unmerged A tokens keep their order: position = #{j < i unmerged}.
__global__ void place_unmerged_kernel(const int64_t* rank, int64_t bsz, int64_t na, int64_t r, int64_t first_a,
                                      int64_t* unm) {
  const int64_t items = bsz * na, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += stride) {
    if (rank[item] < r) continue;
    const int64_t b = item / na, i = item % na;
    int64_t pos = 0;
    for (int64_t j = 0; j < i; ++j) pos += rank[b * na + j] >= r;
    unm[b * (na - r) + pos] = first_a + 2 * i;
  }
}

// One block per output slot (blk = b * m + s): protected / unmerged copy, or a B token plus everything
// merged into it (CSR `offsets` by B position, stable, so every sum has a fixed order: no atomics).
template <typename scalar_t>
__global__ void merge_wavg_kernel(const scalar_t* __restrict__ x, const float* __restrict__ size,
                                  const int64_t* __restrict__ src, const int64_t* __restrict__ unm,
                                  const int64_t* __restrict__ order, const int64_t* __restrict__ offsets,
                                  const scalar_t* __restrict__ cg, const scalar_t* __restrict__ tg, scalar_t* out,
                                  float* size_out, int64_t bsz, int64_t n, int64_t c, int64_t m, int64_t r,
                                  int64_t nu, int64_t nb, int64_t p, int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t blk = blockIdx.x; blk < bsz * m; blk += gridDim.x) {  // block-uniform loop
    const int64_t b = blk / m, s = blk % m;
    const scalar_t* xb = x + b * n * c;
    scalar_t* o = out + blk * c;
    auto sz = [&](int64_t t) { return size ? acc_t(size[b * n + t]) : acc_t(1); };
    if (s < p + nu) {
      const int64_t tok = s < p ? s : unm[b * nu + (s - p)];
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) o[k] = xb[tok * c + k];
      if (threadIdx.x == 0) size_out[blk] = float(sz(tok));
      continue;
    }
    const int64_t j = s - p - nu, tok = first_b + 2 * j;
    const int64_t start = offsets[b * (nb + 1) + j], end = offsets[b * (nb + 1) + j + 1];
    acc_t den = sz(tok);
    for (int64_t e = start; e < end; ++e) den += sz(src[b * r + order[b * r + e]]);
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
      acc_t num = sz(tok) * acc_t(xb[tok * c + k]);
      const acc_t gate = cg ? acc_t(cg[b * c + k]) : acc_t(0);
      for (int64_t e = start; e < end; ++e) {
        const int64_t q = order[b * r + e], stok = src[b * r + q];
        acc_t v = acc_t(xb[stok * c + k]);
        if (cg) v *= acc_t(1) + gate * acc_t(tg[b * r + q]);
        num += sz(stok) * v;
      }
      o[k] = den > 0 ? scalar_t(num / den) : scalar_t(0);  // empty (padding) slot -> 0
    }
    if (threadIdx.x == 0) size_out[blk] = float(den);
  }
}

template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffff, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // the previous call's reads of `shared` are done
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  acc_t total = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += shared[w];
  return total;  // valid in thread 0
}

// One block per row of grad_x (blk = b * n + i): i < m is output slot s = i (a protected or unmerged
// token, or a B token), i >= m is merged token q = i - m. Each row of grad_x is written exactly once;
// the divisor is the forward's size_out (saved by autograd).
template <typename scalar_t>
__global__ void merge_wavg_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                           const float* __restrict__ size, const float* __restrict__ size_out,
                                           const int64_t* __restrict__ src, const int64_t* __restrict__ dst,
                                           const int64_t* __restrict__ unm, const scalar_t* __restrict__ cg,
                                           const scalar_t* __restrict__ tg, scalar_t* gx, scalar_t* gtg, int64_t bsz,
                                           int64_t n, int64_t c, int64_t m, int64_t r, int64_t nu, int64_t p,
                                           int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t shared[kThreads / 32];
  for (int64_t blk = blockIdx.x; blk < bsz * n; blk += gridDim.x) {  // block-uniform loop
    const int64_t b = blk / n, i = blk % n;
    auto sz = [&](int64_t t) { return size ? acc_t(size[b * n + t]) : acc_t(1); };
    auto share = [&](int64_t t, int64_t slot) {
      const acc_t den = size_out[b * m + slot];
      return den > 0 ? sz(t) / den : acc_t(0);
    };
    if (i < p + nu) {  // copied token
      const int64_t tok = i < p ? i : unm[b * nu + (i - p)];
      const scalar_t* gs = g + (b * m + i) * c;
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) gx[(b * n + tok) * c + k] = gs[k];
    } else if (i < m) {  // B token: its own share of its slot
      const int64_t tok = first_b + 2 * (i - p - nu);
      const scalar_t* gs = g + (b * m + i) * c;
      const acc_t f = share(tok, i);
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) gx[(b * n + tok) * c + k] = scalar_t(acc_t(gs[k]) * f);
    } else {  // merged token q
      const int64_t q = i - m, stok = src[b * r + q];
      const int64_t slot = p + nu + (dst[b * r + q] - first_b) / 2;
      const scalar_t* gs = g + (b * m + slot) * c;
      const acc_t f = share(stok, slot);
      const acc_t t = cg ? acc_t(tg[b * r + q]) : acc_t(0);
      acc_t partial = 0;
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
        const acc_t gf = acc_t(gs[k]) * f;
        if (cg) {
          const acc_t gate = acc_t(cg[b * c + k]);
          partial += gf * acc_t(x[(b * n + stok) * c + k]) * gate;
          gx[(b * n + stok) * c + k] = scalar_t(gf * (acc_t(1) + gate * t));
        } else {
          gx[(b * n + stok) * c + k] = scalar_t(gf);
        }
      }
      if (cg) {  // `cg` is the same for every block: the __syncthreads in block_sum are reached by all
        const acc_t total = block_sum(partial, shared);
        if (threadIdx.x == 0) gtg[b * r + q] = scalar_t(total);
      }
    }
  }
}

// d/d channel_gate[c] = sum over merged tokens q (in order) of g[slot_q] * w_q / size_out[slot_q] * x_q[c] * tg_q.
template <typename scalar_t>
__global__ void channel_gate_grad_kernel(const scalar_t* g, const scalar_t* x, const float* size,
                                         const float* size_out, const int64_t* src, const int64_t* dst,
                                         const scalar_t* tg, scalar_t* gcg, int64_t bsz, int64_t n, int64_t c,
                                         int64_t m, int64_t r, int64_t nu, int64_t p, int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < bsz * c; item += stride) {
    const int64_t b = item / c, k = item % c;
    acc_t acc = 0;
    for (int64_t q = 0; q < r; ++q) {
      const int64_t stok = src[b * r + q];
      const int64_t slot = p + nu + (dst[b * r + q] - first_b) / 2;
      const acc_t den = size_out[b * m + slot];
      const acc_t w = size ? acc_t(size[b * n + stok]) : acc_t(1);
      const acc_t f = den > 0 ? w / den : acc_t(0);
      acc += acc_t(g[(b * m + slot) * c + k]) * f * acc_t(x[(b * n + stok) * c + k]) * acc_t(tg[b * r + q]);
    }
    gcg[item] = scalar_t(acc);
  }
}

// One thread per (b, i): protected and B tokens by formula, A tokens from unm/src (disjoint writes).
__global__ void slot_map_kernel(const int64_t* src, const int64_t* dst, const int64_t* unm, int64_t* slot, int64_t bsz,
                                int64_t n, int64_t r, int64_t nu, int64_t p, int64_t first_b) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; item < bsz * n; item += stride) {
    const int64_t b = item / n, i = item % n;
    if (r == 0) {  // nothing merged: the identity
      slot[item] = i;
      continue;
    }
    if (i < p || (i - first_b) % 2 == 0) slot[item] = i < p ? i : p + nu + (i - first_b) / 2;
    if (i < nu) slot[b * n + unm[b * nu + i]] = p + i;
    if (i < r) slot[b * n + src[b * r + i]] = p + nu + (dst[b * r + i] - first_b) / 2;
  }
}

// One block per output row (blk = b * n + i).
template <typename scalar_t>
__global__ void gather_rows_kernel(const scalar_t* x, const int64_t* idx, scalar_t* out, int64_t bsz, int64_t m,
                                   int64_t n, int64_t c) {
  for (int64_t blk = blockIdx.x; blk < bsz * n; blk += gridDim.x) {
    const int64_t b = blk / n;
    const int64_t s = idx[blk];
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) out[blk * c + k] = x[(b * m + s) * c + k];
  }
}

// One block per slot (blk = b * m + s): the sum of the gradients of its tokens, in token order.
template <typename scalar_t>
__global__ void sum_rows_kernel(const scalar_t* g, const int64_t* order, const int64_t* offsets, scalar_t* out,
                                int64_t bsz, int64_t m, int64_t n, int64_t c) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t blk = blockIdx.x; blk < bsz * m; blk += gridDim.x) {
    const int64_t b = blk / m, s = blk % m;
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
      acc_t acc = 0;
      for (int64_t e = offsets[b * (m + 1) + s]; e < offsets[b * (m + 1) + s + 1]; ++e)
        acc += acc_t(g[(b * n + order[b * n + e]) * c + k]);
      out[blk * c + k] = scalar_t(acc);
    }
  }
}

// CSR of the rows of `keys` [B, K] grouped by value in [0, groups): (stable order, offsets[B, groups+1]).
std::pair<at::Tensor, at::Tensor> group_rows(const at::Tensor& keys, int64_t groups) {
  const at::Tensor order = std::get<1>(keys.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false)).contiguous();
  at::Tensor counts = at::zeros({keys.size(0), groups}, keys.options());
  counts.scatter_add_(1, keys, at::ones_like(keys));
  const at::Tensor offsets =
      at::cat({at::zeros({keys.size(0), 1}, keys.options()), counts.cumsum(1)}, 1).contiguous();
  return {order, offsets};
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Grid of a grid-stride kernel: `items` work items, `per_block` of them per block (common/grid_stride.h).
dim3 grid_for(int64_t items, int64_t per_block) {
  return dim3(unsigned(common::grid_stride_blocks(items, per_block)));
}

int channel_threads(int64_t c) { return int(std::min<int64_t>(kThreads, std::max<int64_t>(32, (c + 31) / 32 * 32))); }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_match_cuda(const at::Tensor& metric, int64_t r,
                                                                     int64_t num_protected) {
  const Layout lay = check_match_inputs(metric, r, num_protected);
  const c10::cuda::CUDAGuard guard(metric.device());
  const int64_t re = lay.effective_r(r), bsz = metric.size(0);
  auto opts = metric.options().dtype(at::kLong);
  at::Tensor src = at::empty({bsz, re}, opts), dst = at::empty({bsz, re}, opts);
  at::Tensor unm = at::empty({bsz, lay.na - re}, opts);
  if (bsz == 0 || lay.na == 0) return {src, dst, unm};
  if (re == 0) {  // identity: every A token unmerged, ascending; no similarity needed
    unm.copy_(at::arange(lay.first_a, lay.n, 2, opts).expand({bsz, lay.na}));
    return {src, dst, unm};
  }
  const at::Tensor m = metric.to(metric.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const at::Tensor unit = m / m.norm(2, {-1}, true);  // no epsilon: a zero row gives NaN, as the reference
  const at::Tensor a = unit.slice(1, lay.first_a, lay.n, 2), b = unit.slice(1, lay.first_b, lay.n, 2);
  at::Tensor best = at::empty({bsz, lay.na}, m.options());
  at::Tensor arg = at::empty({bsz, lay.na}, opts), rank = at::empty({bsz, lay.na}, opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "bipartite_match_cuda", [&] {
    // re > 0 implies nb > 0 (Layout::effective_r)
    const at::Tensor scores = at::bmm(a, b.transpose(1, 2)).contiguous();  // cuBLAS
    const int64_t rows = bsz * lay.na;
    best_match_kernel<scalar_t><<<grid_for(rows, kThreads / 32), kThreads, 0, stream>>>(
        scores.data_ptr<scalar_t>(), rows, lay.nb, best.data_ptr<scalar_t>(), arg.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    rank_place_kernel<scalar_t><<<grid_for(rows, kThreads), kThreads, 0, stream>>>(
        best.data_ptr<scalar_t>(), arg.data_ptr<int64_t>(), rank.data_ptr<int64_t>(), bsz, lay.na, re, lay.first_a,
        lay.first_b, src.data_ptr<int64_t>(), dst.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (lay.na > re) {
      place_unmerged_kernel<<<grid_for(rows, kThreads), kThreads, 0, stream>>>(rank.data_ptr<int64_t>(), bsz, lay.na,
                                                                              re, lay.first_a, unm.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {src, dst, unm};
}

std::tuple<at::Tensor, at::Tensor> merge_wavg_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                                   const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                                                   int64_t num_protected, const c10::optional<at::Tensor>& channel_gate,
                                                   const c10::optional<at::Tensor>& token_gate) {
  const Layout lay = check_merge_inputs(x, size, src, dst, unm, num_protected, channel_gate, token_gate);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t bsz = x.size(0), n = x.size(1), c = x.size(2), r = src.size(1), nu = unm.size(1), m = n - r;
  at::Tensor out = at::empty({bsz, m, c}, x.options());
  at::Tensor size_out = at::empty({bsz, m}, x.options().dtype(at::kFloat));
  if (bsz == 0 || m == 0) return {out, size_out};
  if (r == 0) {  // nothing merged: the identity, tokens in their original order
    out.copy_(x);
    if (size) size_out.copy_(*size); else size_out.fill_(1.0f);
    return {out, size_out};
  }
  const auto grouped = group_rows((dst.contiguous() - lay.first_b).div(2, "floor"), lay.nb);
  const at::Tensor &order = grouped.first, &offsets = grouped.second;
  const at::Tensor xc = x.contiguous(), sc = size ? size->contiguous() : at::Tensor();
  const at::Tensor si = src.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = channel_gate ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = token_gate ? token_gate->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_cuda", [&] {
    merge_wavg_kernel<scalar_t><<<grid_for(bsz * m, 1), channel_threads(c), 0, c10::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), si.data_ptr<int64_t>(), ui.data_ptr<int64_t>(),
        order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), opt_ptr<scalar_t>(cgc), opt_ptr<scalar_t>(tgc),
        out.data_ptr<scalar_t>(), size_out.data_ptr<float>(), bsz, n, c, m, r, nu, lay.nb, num_protected,
        lay.first_b);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, size_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> merge_wavg_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& size, const at::Tensor& size_out,
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm, int64_t num_protected,
    const c10::optional<at::Tensor>& channel_gate, const c10::optional<at::Tensor>& token_gate) {
  const Layout lay = check_merge_inputs(x, size, src, dst, unm, num_protected, channel_gate, token_gate);
  check_merge_backward_inputs(grad, size_out, x, src.size(1));
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t bsz = x.size(0), n = x.size(1), c = x.size(2), r = src.size(1), nu = unm.size(1), m = n - r;
  // Outputs are contiguous (as the fake kernels say), whatever the strides of the inputs.
  at::Tensor gx = at::empty(x.sizes(), x.options());
  const bool gated = channel_gate.has_value();
  at::Tensor gcg = gated ? at::zeros(channel_gate->sizes(), x.options()) : at::empty({0}, x.options());
  at::Tensor gtg = gated ? at::zeros(token_gate->sizes(), x.options()) : at::empty({0}, x.options());
  if (bsz == 0 || n == 0) return {gx, gcg, gtg};
  if (r == 0) {  // the forward was the identity (gate gradients stay zero)
    gx.copy_(grad);
    return {gx, gcg, gtg};
  }
  const at::Tensor gc = grad.to(x.scalar_type()).contiguous(), xc = x.contiguous();
  const at::Tensor sc = size ? size->contiguous() : at::Tensor(), soc = size_out.contiguous();
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = gated ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = gated ? token_gate->contiguous() : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_backward_cuda", [&] {
    // kThreads threads (not channel_threads): block_sum's shared array holds kThreads / 32 warps
    merge_wavg_backward_kernel<scalar_t><<<grid_for(bsz * n, 1), kThreads, 0, stream>>>(
        gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), soc.data_ptr<float>(),
        si.data_ptr<int64_t>(), di.data_ptr<int64_t>(), ui.data_ptr<int64_t>(), opt_ptr<scalar_t>(cgc),
        opt_ptr<scalar_t>(tgc), gx.data_ptr<scalar_t>(), gated ? gtg.data_ptr<scalar_t>() : nullptr, bsz, n, c, m, r,
        nu, num_protected, lay.first_b);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (gated) {
      channel_gate_grad_kernel<scalar_t><<<grid_for(bsz * c, kThreads), kThreads, 0, stream>>>(
          gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), soc.data_ptr<float>(),
          si.data_ptr<int64_t>(), di.data_ptr<int64_t>(), tgc.data_ptr<scalar_t>(), gcg.data_ptr<scalar_t>(), bsz, n,
          c, m, r, nu, num_protected, lay.first_b);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {gx, gcg, gtg};
}

at::Tensor merge_slot_map_cuda(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                               int64_t num_protected, int64_t n) {
  const Layout lay = check_slot_map_inputs(src, dst, unm, num_protected, n);
  const int64_t bsz = src.size(0), r = src.size(1), nu = unm.size(1);
  const c10::cuda::CUDAGuard guard(src.device());
  at::Tensor slot = at::empty({bsz, n}, src.options());
  if (bsz == 0 || n == 0) return slot;
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  slot_map_kernel<<<grid_for(bsz * n, kThreads), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      si.data_ptr<int64_t>(), di.data_ptr<int64_t>(), ui.data_ptr<int64_t>(), slot.data_ptr<int64_t>(), bsz, n, r, nu,
      num_protected, lay.first_b);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return slot;
}

at::Tensor unmerge_cuda(const at::Tensor& x_merged, const at::Tensor& slot_map) {
  check_unmerge_inputs(x_merged, slot_map);
  const c10::cuda::CUDAGuard guard(x_merged.device());
  const int64_t bsz = x_merged.size(0), m = x_merged.size(1), c = x_merged.size(2), n = slot_map.size(1);
  at::Tensor out = at::empty({bsz, n, c}, x_merged.options());
  if (bsz == 0 || n == 0 || c == 0) return out;
  const at::Tensor xc = x_merged.contiguous(), sc = slot_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "unmerge_cuda", [&] {
    gather_rows_kernel<scalar_t><<<grid_for(bsz * n, 1), channel_threads(c), 0, c10::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), sc.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), bsz, m, n, c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor unmerge_backward_cuda(const at::Tensor& grad, const at::Tensor& slot_map, int64_t m) {
  check_unmerge_backward_inputs(grad, slot_map, m);
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t bsz = grad.size(0), n = grad.size(1), c = grad.size(2);
  at::Tensor out = at::zeros({bsz, m, c}, grad.options());
  if (bsz == 0 || n == 0 || m == 0 || c == 0) return out;
  const auto grouped = group_rows(slot_map.contiguous(), m);
  const at::Tensor &order = grouped.first, &offsets = grouped.second;
  const at::Tensor gc = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gc.scalar_type(), "unmerge_backward_cuda", [&] {
    sum_rows_kernel<scalar_t><<<grid_for(bsz * m, 1), channel_threads(c), 0, c10::cuda::getCurrentCUDAStream()>>>(
        gc.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
        bsz, m, n, c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

TORCH_LIBRARY_IMPL(leanops, CUDA, lib) {
  lib.impl("bipartite_match", &bipartite_match_cuda);
  lib.impl("merge_wavg", &merge_wavg_cuda);
  lib.impl("merge_wavg_backward", &merge_wavg_backward_cuda);
  lib.impl("merge_slot_map", &merge_slot_map_cuda);
  lib.impl("unmerge", &unmerge_cuda);
  lib.impl("unmerge_backward", &unmerge_backward_cuda);
}

}  // namespace leanops::merge
