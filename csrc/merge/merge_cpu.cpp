// C++ CPU kernels of the merge family: one pass per batch row, parallel over the batch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "merge_checks.h"
#include "merge_ops.h"

namespace leanops::merge {
namespace {

// The score order of DESIGN.md: NaN above every number (as torch.sort); NaN ties with NaN. Used as
// a strict weak order, with the index breaking ties, this is a strict total order on (score, index).
template <typename acc_t>
inline bool beats(acc_t a, acc_t b) {
  if (std::isnan(a)) return !std::isnan(b);
  return !std::isnan(b) && a > b;
}

// Row-wise best match over precomputed similarities, then the stable top-r split, fused per batch row.
template <typename acc_t>
void best_and_split_kernel(const at::Tensor& scores, const Layout& lay, int64_t r, at::Tensor& src, at::Tensor& dst,
                           at::Tensor& unm) {
  const int64_t bsz = scores.size(0), na = lay.na, nb = lay.nb, n_unm = na - r;
  const acc_t* sp = scores.data_ptr<acc_t>();
  int64_t* src_p = src.data_ptr<int64_t>();
  int64_t* dst_p = dst.data_ptr<int64_t>();
  int64_t* unm_p = unm.data_ptr<int64_t>();
  at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(na);
    std::vector<int64_t> arg(na), order(na);
    for (int64_t bi = begin; bi < end; ++bi) {
      for (int64_t i = 0; i < na; ++i) {
        const acc_t* row = sp + (bi * na + i) * nb;
        acc_t bv = -std::numeric_limits<acc_t>::infinity();
        int64_t bj = 0;
        for (int64_t j = 0; j < nb; ++j) {
          if (j == 0 || beats(row[j], bv)) {  // first index wins ties
            bv = row[j];
            bj = j;
          }
        }
        best[i] = bv;
        arg[i] = bj;
      }
      std::iota(order.begin(), order.end(), 0);
      // Highest score first; stable, so ties keep the lower index first.
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return beats(best[a], best[b]); });
      std::sort(order.begin() + r, order.end());
      for (int64_t k = 0; k < r; ++k) {
        src_p[bi * r + k] = lay.first_a + 2 * order[k];
        dst_p[bi * r + k] = lay.first_b + 2 * arg[order[k]];
      }
      for (int64_t k = 0; k < n_unm; ++k) unm_p[bi * n_unm + k] = lay.first_a + 2 * order[r + k];
    }
  });
}

// Checks that src and unm list every A token exactly once, and dst only B tokens.
void check_row_indices(const Layout& lay, const int64_t* src, const int64_t* dst, const int64_t* unm, int64_t r,
                       int64_t n_unm, std::vector<char>& seen) {
  std::fill(seen.begin(), seen.end(), 0);
  auto mark = [&](int64_t i, const char* name) {
    TORCH_CHECK(lay.is_a(i), name, " holds ", i, ", which is not an A token (even index in [protected, N))");
    TORCH_CHECK(!seen[(i - lay.first_a) / 2], name, " lists A token ", i, " twice");
    seen[(i - lay.first_a) / 2] = 1;
  };
  for (int64_t k = 0; k < r; ++k) {
    mark(src[k], "src_idx");
    TORCH_CHECK(lay.is_b(dst[k]), "dst_idx holds ", dst[k], ", which is not a B token (odd index in [protected, N))");
  }
  for (int64_t k = 0; k < n_unm; ++k) mark(unm[k], "unm_idx");
}

template <typename scalar_t>
void merge_wavg_kernel(const at::Tensor& x, const float* size, const at::Tensor& src, const at::Tensor& dst,
                       const at::Tensor& unm, const Layout& lay, const scalar_t* cg, const scalar_t* tg,
                       at::Tensor& x_out, at::Tensor& size_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bsz = x.size(0), n = x.size(1), c = x.size(2), r = src.size(1), n_unm = unm.size(1);
  const int64_t p = lay.num_protected, nb = lay.nb, m = n - r;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  scalar_t* op = x_out.data_ptr<scalar_t>();
  float* sp = size_out.data_ptr<float>();
  at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> num(nb * c), den(nb);
    std::vector<char> seen(lay.na);
    for (int64_t bi = begin; bi < end; ++bi) {
      const scalar_t* xr = xp + bi * n * c;
      const float* sr = size ? size + bi * n : nullptr;
      const int64_t* sidx = src.data_ptr<int64_t>() + bi * r;
      const int64_t* didx = dst.data_ptr<int64_t>() + bi * r;
      const int64_t* uidx = unm.data_ptr<int64_t>() + bi * n_unm;
      check_row_indices(lay, sidx, didx, uidx, r, n_unm, seen);
      scalar_t* orow = op + bi * m * c;
      float* srow = sp + bi * m;
      auto sz = [&](int64_t i) { return sr ? sr[i] : 1.0f; };
      if (r == 0) {  // nothing merged: the identity, tokens in their original order
        std::copy(xr, xr + n * c, orow);
        for (int64_t i = 0; i < n; ++i) srow[i] = sz(i);
        continue;
      }
      auto copy_token = [&](int64_t from, int64_t slot) {
        std::copy(xr + from * c, xr + (from + 1) * c, orow + slot * c);
        srow[slot] = sz(from);
      };
      for (int64_t i = 0; i < p; ++i) copy_token(i, i);
      for (int64_t k = 0; k < n_unm; ++k) copy_token(uidx[k], p + k);
      for (int64_t j = 0; j < nb; ++j) {  // each B token starts with its own weighted value
        const int64_t tok = lay.first_b + 2 * j;
        const acc_t w = sz(tok);
        den[j] = w;
        for (int64_t k = 0; k < c; ++k) num[j * c + k] = w * acc_t(xr[tok * c + k]);
      }
      for (int64_t k = 0; k < r; ++k) {  // merged-in A tokens, PYRA-modulated when gated
        const int64_t j = lay.b_pos(didx[k]);
        const acc_t w = sz(sidx[k]);
        const scalar_t* v = xr + sidx[k] * c;
        den[j] += w;
        acc_t* acc = num.data() + j * c;
        if (cg) {
          const acc_t t = tg[bi * r + k];
          const scalar_t* g = cg + bi * c;
          for (int64_t q = 0; q < c; ++q) acc[q] += w * acc_t(v[q]) * (acc_t(1) + acc_t(g[q]) * t);
        } else {
          for (int64_t q = 0; q < c; ++q) acc[q] += w * acc_t(v[q]);
        }
      }
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t slot = p + n_unm + j;
        scalar_t* o = orow + slot * c;
        if (den[j] > 0) {
          const acc_t inv = acc_t(1) / den[j];
          for (int64_t k = 0; k < c; ++k) o[k] = scalar_t(num[j * c + k] * inv);
        } else {  // empty (padding) slot -> 0, even where a size-0 token held NaN or inf
          std::fill(o, o + c, scalar_t(0));
        }
        srow[slot] = float(den[j]);
      }
    }
  });
}

// The backward divides by the forward's size_out (saved by autograd), so it needs no sums of its own.
template <typename scalar_t>
void merge_wavg_backward_kernel(const at::Tensor& grad, const at::Tensor& x, const float* size, const float* size_out,
                                const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm, const Layout& lay,
                                const scalar_t* cg, const scalar_t* tg, at::Tensor& gx, scalar_t* gcg, scalar_t* gtg) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bsz = x.size(0), n = x.size(1), c = x.size(2), r = src.size(1), n_unm = unm.size(1);
  const int64_t p = lay.num_protected, nb = lay.nb, m = n - r;
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* gp = grad.data_ptr<scalar_t>();
  scalar_t* gxp = gx.data_ptr<scalar_t>();
  at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gcg_acc(c);
    std::vector<char> seen(lay.na);
    for (int64_t bi = begin; bi < end; ++bi) {
      const scalar_t* xr = xp + bi * n * c;
      const scalar_t* gr = gp + bi * m * c;
      scalar_t* gxr = gxp + bi * n * c;
      const float* sr = size ? size + bi * n : nullptr;
      const float* den = size_out + bi * m + p + n_unm;  // total size of each B slot
      const int64_t* sidx = src.data_ptr<int64_t>() + bi * r;
      const int64_t* didx = dst.data_ptr<int64_t>() + bi * r;
      const int64_t* uidx = unm.data_ptr<int64_t>() + bi * n_unm;
      check_row_indices(lay, sidx, didx, uidx, r, n_unm, seen);
      if (r == 0) {  // the forward was the identity
        std::copy(gr, gr + n * c, gxr);
        if (cg) std::fill(gcg + bi * c, gcg + (bi + 1) * c, scalar_t(0));
        continue;
      }
      auto sz = [&](int64_t i) { return sr ? acc_t(sr[i]) : acc_t(1); };
      auto share = [&](int64_t tok, int64_t j) { return den[j] > 0 ? sz(tok) / acc_t(den[j]) : acc_t(0); };
      for (int64_t i = 0; i < p; ++i) std::copy(gr + i * c, gr + (i + 1) * c, gxr + i * c);
      for (int64_t k = 0; k < n_unm; ++k) std::copy(gr + (p + k) * c, gr + (p + k + 1) * c, gxr + uidx[k] * c);
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t tok = lay.first_b + 2 * j;
        const acc_t f = share(tok, j);
        const scalar_t* g = gr + (p + n_unm + j) * c;
        for (int64_t k = 0; k < c; ++k) gxr[tok * c + k] = scalar_t(acc_t(g[k]) * f);
      }
      if (cg) std::fill(gcg_acc.begin(), gcg_acc.end(), acc_t(0));
      for (int64_t k = 0; k < r; ++k) {
        const int64_t j = lay.b_pos(didx[k]);
        const acc_t f = share(sidx[k], j);
        const scalar_t* g = gr + (p + n_unm + j) * c;
        const scalar_t* v = xr + sidx[k] * c;
        scalar_t* out = gxr + sidx[k] * c;
        if (cg) {
          const acc_t t = tg[bi * r + k];
          const scalar_t* gate = cg + bi * c;
          acc_t gt = 0;
          for (int64_t q = 0; q < c; ++q) {
            const acc_t gf = acc_t(g[q]) * f;
            out[q] = scalar_t(gf * (acc_t(1) + acc_t(gate[q]) * t));
            gcg_acc[q] += gf * acc_t(v[q]) * t;
            gt += gf * acc_t(v[q]) * acc_t(gate[q]);
          }
          gtg[bi * r + k] = scalar_t(gt);
        } else {
          for (int64_t q = 0; q < c; ++q) out[q] = scalar_t(acc_t(g[q]) * f);
        }
      }
      if (cg)
        for (int64_t q = 0; q < c; ++q) gcg[bi * c + q] = scalar_t(gcg_acc[q]);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_match_cpu(const at::Tensor& metric, int64_t r,
                                                                    int64_t num_protected) {
  const Layout lay = check_match_inputs(metric, r, num_protected);
  const int64_t re = lay.effective_r(r), bsz = metric.size(0);
  auto opts = metric.options().dtype(at::kLong);
  at::Tensor src = at::empty({bsz, re}, opts), dst = at::empty({bsz, re}, opts);
  at::Tensor unm = at::empty({bsz, lay.na - re}, opts);
  if (bsz == 0 || lay.na == 0) return {src, dst, unm};
  if (re == 0) {  // identity: every A token unmerged, ascending; no similarity needed
    unm.copy_(at::arange(lay.first_a, lay.n, 2, opts).expand({bsz, lay.na}));
    return {src, dst, unm};
  }
  // Cosine similarities in fp32 (fp64 for double) by one batched GEMM (BLAS does this best); the
  // argmax, ranking and split that ToMe runs as separate eager ops are fused per row below.
  const at::Tensor m = metric.to(metric.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const at::Tensor unit = m / m.norm(2, {-1}, true);
  const at::Tensor a = unit.slice(1, lay.first_a, lay.n, 2), b = unit.slice(1, lay.first_b, lay.n, 2);
  const at::Tensor scores = lay.nb > 0 ? at::bmm(a, b.transpose(1, 2)).contiguous()
                                       : at::empty({bsz, lay.na, 0}, m.options());
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "bipartite_match_cpu",
                             [&] { best_and_split_kernel<scalar_t>(scores, lay, re, src, dst, unm); });
  return {src, dst, unm};
}

std::tuple<at::Tensor, at::Tensor> merge_wavg_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                                  const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                                                  int64_t num_protected, const c10::optional<at::Tensor>& channel_gate,
                                                  const c10::optional<at::Tensor>& token_gate) {
  const Layout lay = check_merge_inputs(x, size, src, dst, unm, num_protected, channel_gate, token_gate);
  const int64_t bsz = x.size(0), m = x.size(1) - src.size(1);
  at::Tensor x_out = at::empty({bsz, m, x.size(2)}, x.options());
  at::Tensor size_out = at::empty({bsz, m}, x.options().dtype(at::kFloat));
  if (bsz == 0 || m == 0) return {x_out, size_out};
  const at::Tensor xc = x.contiguous(), sc = size ? size->contiguous() : at::Tensor();
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = channel_gate ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = token_gate ? token_gate->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_cpu", [&] {
    merge_wavg_kernel<scalar_t>(xc, sc.defined() ? sc.data_ptr<float>() : nullptr, si, di, ui, lay,
                                cgc.defined() ? cgc.data_ptr<scalar_t>() : nullptr,
                                tgc.defined() ? tgc.data_ptr<scalar_t>() : nullptr, x_out, size_out);
  });
  return {x_out, size_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> merge_wavg_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& size, const at::Tensor& size_out,
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm, int64_t num_protected,
    const c10::optional<at::Tensor>& channel_gate, const c10::optional<at::Tensor>& token_gate) {
  const Layout lay = check_merge_inputs(x, size, src, dst, unm, num_protected, channel_gate, token_gate);
  check_merge_backward_inputs(grad, size_out, x, src.size(1));
  // Outputs are contiguous (as the fake kernels say), whatever the strides of the inputs.
  at::Tensor gx = at::empty(x.sizes(), x.options());
  at::Tensor gcg = channel_gate ? at::empty(channel_gate->sizes(), x.options()) : at::empty({0}, x.options());
  at::Tensor gtg = token_gate ? at::empty(token_gate->sizes(), x.options()) : at::empty({0}, x.options());
  if (x.size(0) == 0) return {gx, gcg, gtg};
  const at::Tensor gc = grad.to(x.scalar_type()).contiguous(), xc = x.contiguous();
  const at::Tensor sc = size ? size->contiguous() : at::Tensor(), soc = size_out.contiguous();
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  const at::Tensor cgc = channel_gate ? channel_gate->contiguous() : at::Tensor();
  const at::Tensor tgc = token_gate ? token_gate->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "merge_wavg_backward_cpu", [&] {
    merge_wavg_backward_kernel<scalar_t>(
        gc, xc, sc.defined() ? sc.data_ptr<float>() : nullptr, soc.data_ptr<float>(), si, di, ui, lay,
        cgc.defined() ? cgc.data_ptr<scalar_t>() : nullptr, tgc.defined() ? tgc.data_ptr<scalar_t>() : nullptr, gx,
        cgc.defined() ? gcg.data_ptr<scalar_t>() : nullptr, tgc.defined() ? gtg.data_ptr<scalar_t>() : nullptr);
  });
  return {gx, gcg, gtg};
}

at::Tensor merge_slot_map_cpu(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                              int64_t num_protected, int64_t n) {
  const Layout lay = check_slot_map_inputs(src, dst, unm, num_protected, n);
  const int64_t bsz = src.size(0), r = src.size(1), n_unm = unm.size(1);
  at::Tensor slot = at::empty({bsz, n}, src.options());
  const at::Tensor si = src.contiguous(), di = dst.contiguous(), ui = unm.contiguous();
  int64_t* out = slot.data_ptr<int64_t>();
  at::parallel_for(0, bsz, 16, [&](int64_t begin, int64_t end) {
    std::vector<char> seen(lay.na);
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t* s = si.data_ptr<int64_t>() + bi * r;
      const int64_t* d = di.data_ptr<int64_t>() + bi * r;
      const int64_t* u = ui.data_ptr<int64_t>() + bi * n_unm;
      check_row_indices(lay, s, d, u, r, n_unm, seen);
      int64_t* row = out + bi * n;
      if (r == 0) {  // nothing merged: the identity
        std::iota(row, row + n, int64_t(0));
        continue;
      }
      for (int64_t i = 0; i < num_protected; ++i) row[i] = i;
      for (int64_t j = 0; j < lay.nb; ++j) row[lay.first_b + 2 * j] = num_protected + n_unm + j;
      for (int64_t k = 0; k < n_unm; ++k) row[u[k]] = num_protected + k;
      for (int64_t k = 0; k < r; ++k) row[s[k]] = num_protected + n_unm + lay.b_pos(d[k]);
    }
  });
  return slot;
}

at::Tensor unmerge_cpu(const at::Tensor& x_merged, const at::Tensor& slot_map) {
  check_unmerge_inputs(x_merged, slot_map);
  const int64_t bsz = x_merged.size(0), m = x_merged.size(1), c = x_merged.size(2), n = slot_map.size(1);
  at::Tensor out = at::empty({bsz, n, c}, x_merged.options());
  if (bsz == 0 || n == 0) return out;
  const at::Tensor xc = x_merged.contiguous(), sc = slot_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "unmerge_cpu", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const int64_t* sp = sc.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bi = begin; bi < end; ++bi)
        for (int64_t i = 0; i < n; ++i) {
          const int64_t s = sp[bi * n + i];
          TORCH_CHECK(s >= 0 && s < m, "slot_map holds ", s, ", outside [0, M=", m, ")");
          std::copy(xp + (bi * m + s) * c, xp + (bi * m + s + 1) * c, op + (bi * n + i) * c);
        }
    });
  });
  return out;
}

at::Tensor unmerge_backward_cpu(const at::Tensor& grad, const at::Tensor& slot_map, int64_t m) {
  check_unmerge_backward_inputs(grad, slot_map, m);
  const int64_t bsz = grad.size(0), n = grad.size(1), c = grad.size(2);
  at::Tensor out = at::zeros({bsz, m, c}, grad.options());
  if (bsz == 0 || n == 0) return out;
  const at::Tensor gc = grad.contiguous(), sc = slot_map.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gc.scalar_type(), "unmerge_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = gc.data_ptr<scalar_t>();
    const int64_t* sp = sc.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(m * c);
      for (int64_t bi = begin; bi < end; ++bi) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t i = 0; i < n; ++i) {
          const int64_t s = sp[bi * n + i];
          TORCH_CHECK(s >= 0 && s < m, "slot_map holds ", s, ", outside [0, M=", m, ")");
          for (int64_t k = 0; k < c; ++k) acc[s * c + k] += acc_t(gp[(bi * n + i) * c + k]);
        }
        for (int64_t k = 0; k < m * c; ++k) op[bi * m * c + k] = scalar_t(acc[k]);
      }
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(leanops, CPU, lib) {
  lib.impl("bipartite_match", &bipartite_match_cpu);
  lib.impl("merge_wavg", &merge_wavg_cpu);
  lib.impl("merge_wavg_backward", &merge_wavg_backward_cpu);
  lib.impl("merge_slot_map", &merge_slot_map_cpu);
  lib.impl("unmerge", &unmerge_cpu);
  lib.impl("unmerge_backward", &unmerge_backward_cpu);
}

}  // namespace leanops::merge
