// CUDA kernels of the merge family. UNTESTED: written without a GPU; see README and build_info().
// Same contracts as merge_cpu.cpp. Shapes and dtypes are checked here; index values are checked by the
// Python wrapper (validate=True), since a device-side check would cost a sync.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "merge_checks.h"

namespace leanops::merge {
namespace {

constexpr int kThreads = 256;

template <typename acc_t>
__device__ __forceinline__ bool beats(acc_t a, acc_t b) {  // torch's order: NaN above every number
  if (isnan(a)) return !isnan(b);
  return !isnan(b) && a > b;
}

// One warp per A row: the best B partner, lowest index on ties.
template <typename acc_t>
__global__ void best_match_kernel(const acc_t* __restrict__ scores, int64_t rows, int64_t nb, acc_t* best,
                                  int64_t* arg) {
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= rows) return;
  const acc_t* row = scores + warp * nb;
  acc_t bv = -INFINITY;
  int64_t bj = nb;  // "none yet"
  for (int64_t j = lane; j < nb; j += 32) {
    const acc_t v = row[j];
    if (bj == nb || beats(v, bv)) {
      bv = v;
      bj = j;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const acc_t ov = __shfl_down_sync(0xffffffff, bv, offset);
    const int64_t oj = __shfl_down_sync(0xffffffff, bj, offset);
    const bool take = oj != nb && (bj == nb || beats(ov, bv) || (!beats(bv, ov) && oj < bj));
    if (take) {
      bv = ov;
      bj = oj;
    }
  }
  if (lane == 0) {
    best[warp] = bv;
    arg[warp] = bj == nb ? 0 : bj;
  }
}

// rank_i = #{j: best_j beats best_i, or ties with j < i}; the top r become (src, dst) in rank order.
template <typename acc_t>
__global__ void rank_place_kernel(const acc_t* best, const int64_t* arg, int64_t* rank, int64_t na, int64_t r,
                                  int64_t first_a, int64_t first_b, int64_t* src, int64_t* dst) {
  const int64_t b = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= na) return;
  const acc_t* row = best + b * na;
  const acc_t bi = row[i];
  int64_t k = 0;
  for (int64_t j = 0; j < na; ++j) {
    const acc_t bj = row[j];
    k += beats(bj, bi) || (!beats(bi, bj) && j < i);
  }
  rank[b * na + i] = k;
  if (k < r) {
    src[b * r + k] = first_a + 2 * i;
    dst[b * r + k] = first_b + 2 * arg[b * na + i];
  }
}

__global__ void place_unmerged_kernel(const int64_t* rank, int64_t na, int64_t r, int64_t first_a, int64_t* unm) {
  const int64_t b = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= na || rank[b * na + i] < r) return;
  int64_t pos = 0;
  for (int64_t j = 0; j < i; ++j) pos += rank[b * na + j] >= r;
  unm[b * (na - r) + pos] = first_a + 2 * i;
}

// One output slot per block: protected / unmerged copy, or a B token plus everything merged into it.
template <typename scalar_t>
__global__ void merge_wavg_kernel(const scalar_t* __restrict__ x, const float* __restrict__ size,
                                  const int64_t* __restrict__ src, const int64_t* __restrict__ unm,
                                  const int64_t* __restrict__ order, const int64_t* __restrict__ ptr,
                                  const scalar_t* __restrict__ cg, const scalar_t* __restrict__ tg, scalar_t* out,
                                  float* size_out, int64_t n, int64_t c, int64_t m, int64_t r, int64_t nu, int64_t nb,
                                  int64_t p, int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t s = blockIdx.x, b = blockIdx.y;
  const scalar_t* xb = x + b * n * c;
  scalar_t* o = out + (b * m + s) * c;
  auto sz = [&](int64_t t) { return size ? acc_t(size[b * n + t]) : acc_t(1); };
  if (s < p + nu) {
    const int64_t tok = s < p ? s : unm[b * nu + (s - p)];
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) o[k] = xb[tok * c + k];
    if (threadIdx.x == 0) size_out[b * m + s] = float(sz(tok));
    return;
  }
  const int64_t j = s - p - nu, tok = first_b + 2 * j;
  const int64_t start = ptr[b * (nb + 1) + j], end = ptr[b * (nb + 1) + j + 1];
  acc_t den = sz(tok);
  for (int64_t e = start; e < end; ++e) den += sz(src[b * r + order[b * r + e]]);
  const acc_t inv = den > 0 ? acc_t(1) / den : acc_t(0);
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
    acc_t num = sz(tok) * acc_t(xb[tok * c + k]);
    const acc_t gate = cg ? acc_t(cg[b * c + k]) : acc_t(0);
    for (int64_t e = start; e < end; ++e) {
      const int64_t q = order[b * r + e], stok = src[b * r + q];
      acc_t v = acc_t(xb[stok * c + k]);
      if (cg) v *= acc_t(1) + gate * acc_t(tg[b * r + q]);
      num += sz(stok) * v;
    }
    o[k] = scalar_t(num * inv);
  }
  if (threadIdx.x == 0) size_out[b * m + s] = float(den);
}

template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffff, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  acc_t total = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += shared[w];
  return total;  // valid in thread 0
}

template <typename scalar_t>
__global__ void merge_wavg_backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                           const float* __restrict__ size, const int64_t* __restrict__ src,
                                           const int64_t* __restrict__ unm, const int64_t* __restrict__ order,
                                           const int64_t* __restrict__ ptr, const scalar_t* __restrict__ cg,
                                           const scalar_t* __restrict__ tg, scalar_t* gx, scalar_t* gtg, int64_t n,
                                           int64_t c, int64_t m, int64_t r, int64_t nu, int64_t nb, int64_t p,
                                           int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t shared[kThreads / 32];
  const int64_t s = blockIdx.x, b = blockIdx.y;
  const scalar_t* gs = g + (b * m + s) * c;
  auto sz = [&](int64_t t) { return size ? acc_t(size[b * n + t]) : acc_t(1); };
  if (s < p + nu) {
    const int64_t tok = s < p ? s : unm[b * nu + (s - p)];
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) gx[(b * n + tok) * c + k] = gs[k];
    return;
  }
  const int64_t j = s - p - nu, tok = first_b + 2 * j;
  const int64_t start = ptr[b * (nb + 1) + j], end = ptr[b * (nb + 1) + j + 1];
  acc_t den = sz(tok);
  for (int64_t e = start; e < end; ++e) den += sz(src[b * r + order[b * r + e]]);
  const acc_t inv = den > 0 ? acc_t(1) / den : acc_t(0);
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x)
    gx[(b * n + tok) * c + k] = scalar_t(acc_t(gs[k]) * sz(tok) * inv);
  for (int64_t e = start; e < end; ++e) {
    const int64_t q = order[b * r + e], stok = src[b * r + q];
    const acc_t f = sz(stok) * inv;
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
    if (cg) {
      const acc_t total = block_sum(partial, shared);
      if (threadIdx.x == 0) gtg[b * r + q] = scalar_t(total);
    }
  }
}

// d/d channel_gate[c] = sum over merged tokens of g[slot] * w / den * x_src[c] * token_gate.
template <typename scalar_t>
__global__ void channel_gate_grad_kernel(const scalar_t* g, const scalar_t* x, const float* size,
                                         const float* size_out, const int64_t* src, const int64_t* dst,
                                         const scalar_t* tg, scalar_t* gcg, int64_t n, int64_t c, int64_t m,
                                         int64_t r, int64_t nu, int64_t p, int64_t first_b) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t b = blockIdx.y;
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= c) return;
  acc_t acc = 0;
  for (int64_t q = 0; q < r; ++q) {
    const int64_t stok = src[b * r + q];
    const int64_t slot = p + nu + (dst[b * r + q] - first_b) / 2;
    const acc_t den = size_out[b * m + slot];
    const acc_t w = size ? acc_t(size[b * n + stok]) : acc_t(1);
    const acc_t f = den > 0 ? w / den : acc_t(0);
    acc += acc_t(g[(b * m + slot) * c + k]) * f * acc_t(x[(b * n + stok) * c + k]) * acc_t(tg[b * r + q]);
  }
  gcg[b * c + k] = scalar_t(acc);
}

__global__ void slot_map_kernel(const int64_t* src, const int64_t* dst, const int64_t* unm, int64_t* slot, int64_t n,
                                int64_t r, int64_t nu, int64_t p, int64_t first_b) {
  const int64_t b = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && (i < p || (i - first_b) % 2 == 0)) slot[b * n + i] = i < p ? i : p + nu + (i - first_b) / 2;
  if (i < nu) slot[b * n + unm[b * nu + i]] = p + i;
  if (i < r) slot[b * n + src[b * r + i]] = p + nu + (dst[b * r + i] - first_b) / 2;
}

template <typename scalar_t>
__global__ void gather_rows_kernel(const scalar_t* x, const int64_t* idx, scalar_t* out, int64_t m, int64_t n,
                                   int64_t c) {
  const int64_t i = blockIdx.x, b = blockIdx.y;
  const int64_t s = idx[b * n + i];
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) out[(b * n + i) * c + k] = x[(b * m + s) * c + k];
}

template <typename scalar_t>
__global__ void sum_rows_kernel(const scalar_t* g, const int64_t* order, const int64_t* ptr, scalar_t* out, int64_t m,
                                int64_t n, int64_t c) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t s = blockIdx.x, b = blockIdx.y;
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
    acc_t acc = 0;
    for (int64_t e = ptr[b * (m + 1) + s]; e < ptr[b * (m + 1) + s + 1]; ++e)
      acc += acc_t(g[(b * n + order[b * n + e]) * c + k]);
    out[(b * m + s) * c + k] = scalar_t(acc);
  }
}

// CSR of the rows of `keys` [B, K] grouped by value in [0, groups): (stable order, ptr[B, groups+1]).
std::pair<at::Tensor, at::Tensor> group_rows(const at::Tensor& keys, int64_t groups) {
  const at::Tensor order = std::get<1>(keys.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false)).contiguous();
  at::Tensor counts = at::zeros({keys.size(0), groups}, keys.options());
  counts.scatter_add_(1, keys, at::ones_like(keys));
  const at::Tensor ptr = at::cat({at::zeros({keys.size(0), 1}, keys.options()), counts.cumsum(1)}, 1).contiguous();
  return {order, ptr};
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

unsigned blocks(int64_t work, int threads = kThreads) { return unsigned((work + threads - 1) / threads); }

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
  const at::Tensor m = metric.to(metric.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const at::Tensor unit = m / m.norm(2, {-1}, true);
  const at::Tensor a = unit.slice(1, lay.first_a, lay.n, 2), b = unit.slice(1, lay.first_b, lay.n, 2);
  at::Tensor best = at::empty({bsz, lay.na}, m.options());
  at::Tensor arg = at::zeros({bsz, lay.na}, opts), rank = at::empty({bsz, lay.na}, opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "bipartite_match_cuda", [&] {
    if (lay.nb > 0) {
      const at::Tensor scores = at::bmm(a, b.transpose(1, 2)).contiguous();  // cuBLAS
      const int64_t rows = bsz * lay.na;
      best_match_kernel<scalar_t><<<blocks(rows * 32), kThreads, 0, stream>>>(
          scores.data_ptr<scalar_t>(), rows, lay.nb, best.data_ptr<scalar_t>(), arg.data_ptr<int64_t>());
    } else {
      best.fill_(-std::numeric_limits<double>::infinity());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(blocks(lay.na), unsigned(bsz));
    rank_place_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(best.data_ptr<scalar_t>(), arg.data_ptr<int64_t>(),
                                                               rank.data_ptr<int64_t>(), lay.na, re, lay.first_a,
                                                               lay.first_b, src.data_ptr<int64_t>(),
                                                               dst.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (lay.na > re) {
      place_unmerged_kernel<<<grid, kThreads, 0, stream>>>(rank.data_ptr<int64_t>(), lay.na, re, lay.first_a,
                                                           unm.data_ptr<int64_t>());
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
  const auto grouped = group_rows((dst.contiguous() - lay.first_b).div(2, "floor"), lay.nb);
  const at::Tensor &order = grouped.first, &ptr = grouped.second;
  const at::Tensor xc = x.contiguous(), sc = size ? size->contiguous() : at::Tensor();
  const at::Tensor si = src.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = channel_gate ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = token_gate ? token_gate->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_cuda", [&] {
    merge_wavg_kernel<scalar_t><<<dim3(unsigned(m), unsigned(bsz)), channel_threads(c), 0,
                                  c10::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), si.data_ptr<int64_t>(), ui.data_ptr<int64_t>(),
        order.data_ptr<int64_t>(), ptr.data_ptr<int64_t>(), opt_ptr<scalar_t>(cgc), opt_ptr<scalar_t>(tgc),
        out.data_ptr<scalar_t>(), size_out.data_ptr<float>(), n, c, m, r, nu, lay.nb, num_protected, lay.first_b);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, size_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> merge_wavg_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& size, const at::Tensor& src,
    const at::Tensor& dst, const at::Tensor& unm, int64_t num_protected,
    const c10::optional<at::Tensor>& channel_gate, const c10::optional<at::Tensor>& token_gate) {
  const Layout lay = check_merge_inputs(x, size, src, dst, unm, num_protected, channel_gate, token_gate);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t bsz = x.size(0), n = x.size(1), c = x.size(2), r = src.size(1), nu = unm.size(1), m = n - r;
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == bsz && grad.size(1) == m && grad.size(2) == c,
              "grad must be [B, N - r, C], got ", grad.sizes());
  at::Tensor gx = at::empty_like(x, at::MemoryFormat::Contiguous);
  const bool gated = channel_gate.has_value();
  at::Tensor gcg = gated ? at::zeros_like(*channel_gate, at::MemoryFormat::Contiguous) : at::empty({0}, x.options());
  at::Tensor gtg = gated ? at::zeros_like(*token_gate, at::MemoryFormat::Contiguous) : at::empty({0}, x.options());
  if (bsz == 0 || m == 0) return {gx, gcg, gtg};
  const auto grouped = group_rows((dst.contiguous() - lay.first_b).div(2, "floor"), lay.nb);
  const at::Tensor &order = grouped.first, &ptr = grouped.second;
  const at::Tensor gc = grad.to(x.scalar_type()).contiguous(), xc = x.contiguous();
  const at::Tensor sc = size ? size->contiguous() : at::Tensor();
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = gated ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = gated ? token_gate->contiguous() : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_backward_cuda", [&] {
    merge_wavg_backward_kernel<scalar_t><<<dim3(unsigned(m), unsigned(bsz)), kThreads, 0, stream>>>(
        gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), si.data_ptr<int64_t>(),
        ui.data_ptr<int64_t>(), order.data_ptr<int64_t>(), ptr.data_ptr<int64_t>(), opt_ptr<scalar_t>(cgc),
        opt_ptr<scalar_t>(tgc), gx.data_ptr<scalar_t>(), gated ? gtg.data_ptr<scalar_t>() : nullptr, n, c, m, r, nu,
        lay.nb, num_protected, lay.first_b);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (gated && r > 0) {
      // size_out of the forward, recomputed: the slot totals the gate gradient divides by
      const at::Tensor size_out =
          std::get<1>(merge_wavg_cuda(xc.narrow(2, 0, 1), size, si, di, ui, num_protected, c10::nullopt,
                                      c10::nullopt));
      channel_gate_grad_kernel<scalar_t><<<dim3(blocks(c), unsigned(bsz)), kThreads, 0, stream>>>(
          gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), opt_ptr<float>(sc), size_out.data_ptr<float>(),
          si.data_ptr<int64_t>(), di.data_ptr<int64_t>(), tgc.data_ptr<scalar_t>(), gcg.data_ptr<scalar_t>(), n, c, m,
          r, nu, num_protected, lay.first_b);
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
  slot_map_kernel<<<dim3(blocks(n), unsigned(bsz)), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      si.data_ptr<int64_t>(), di.data_ptr<int64_t>(), ui.data_ptr<int64_t>(), slot.data_ptr<int64_t>(), n, r, nu,
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
    gather_rows_kernel<scalar_t><<<dim3(unsigned(n), unsigned(bsz)), channel_threads(c), 0,
                                   c10::cuda::getCurrentCUDAStream()>>>(xc.data_ptr<scalar_t>(), sc.data_ptr<int64_t>(),
                                                                       out.data_ptr<scalar_t>(), m, n, c);
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
  const at::Tensor &order = grouped.first, &ptr = grouped.second;
  const at::Tensor gc = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gc.scalar_type(), "unmerge_backward_cuda", [&] {
    sum_rows_kernel<scalar_t><<<dim3(unsigned(m), unsigned(bsz)), channel_threads(c), 0,
                                c10::cuda::getCurrentCUDAStream()>>>(gc.data_ptr<scalar_t>(), order.data_ptr<int64_t>(),
                                                                    ptr.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
                                                                    m, n, c);
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
