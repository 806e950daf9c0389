// Argument checks shared by the CPU and CUDA merge kernels: every message names the argument.
#pragma once
#include <ATen/ATen.h>

#include "common/checks.h"

namespace leanops::merge {

// Token layout of DESIGN.md: tokens [0, P) protected (P = num_protected); A = even indices >= P;
// B = odd indices >= P.
struct Layout {
  int64_t n, num_protected, na, nb, first_a, first_b;
  Layout(int64_t n_, int64_t p) : n(n_), num_protected(p) {
    const int64_t rest = n > p ? n - p : 0;
    const bool p_even = p % 2 == 0;
    na = p_even ? (rest + 1) / 2 : rest / 2;
    nb = p_even ? rest / 2 : (rest + 1) / 2;
    first_a = p_even ? p : p + 1;
    first_b = p_even ? p + 1 : p;
  }
  int64_t effective_r(int64_t r) const { return nb > 0 ? std::min(r, na) : 0; }
  bool is_a(int64_t i) const { return i >= num_protected && i < n && i % 2 == 0; }
  bool is_b(int64_t i) const { return i >= num_protected && i < n && i % 2 == 1; }
  int64_t b_pos(int64_t i) const { return (i - first_b) / 2; }
};

using common::check_feature_dtype;

inline void check_index(const at::Tensor& t, const char* name, int64_t b, const at::Tensor& like) {
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D [B, k], got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.size(0) == b, name, " batch size ", t.size(0), " does not match ", b);
  TORCH_CHECK(t.device() == like.device(), name, " must be on ", like.device(), ", got ", t.device());
}

inline Layout check_match_inputs(const at::Tensor& metric, int64_t r, int64_t num_protected) {
  TORCH_CHECK(metric.dim() == 3, "metric must be 3-D [B, N, C], got ", metric.dim(), "-D");
  check_feature_dtype(metric, "metric");
  TORCH_CHECK(metric.size(2) > 0, "metric must have C > 0 channels");
  TORCH_CHECK(num_protected >= 0, "num_protected must be >= 0, got ", num_protected);
  TORCH_CHECK(num_protected <= metric.size(1), "num_protected (", num_protected,
              ") must be <= the number of tokens N = ", metric.size(1));
  TORCH_CHECK(r >= 0, "r must be >= 0, got ", r);
  TORCH_CHECK(r <= metric.size(1) - num_protected, "r (", r, ") is larger than the ",
              metric.size(1) - num_protected, " mergeable tokens (N - num_protected)");
  return Layout(metric.size(1), num_protected);
}

// Checks shapes of the merge arguments; returns the layout and the effective r.
inline Layout check_merge_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                 const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                                 int64_t num_protected, const c10::optional<at::Tensor>& channel_gate,
                                 const c10::optional<at::Tensor>& token_gate) {
  TORCH_CHECK(x.dim() == 3, "x must be 3-D [B, N, C], got ", x.dim(), "-D");
  check_feature_dtype(x, "x");
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2);
  TORCH_CHECK(num_protected >= 0 && num_protected <= n, "num_protected must be in [0, N=", n, "], got ",
              num_protected);
  Layout lay(n, num_protected);
  if (size.has_value()) {
    TORCH_CHECK(size->dim() == 2 && size->size(0) == b && size->size(1) == n,
                "size must be [B, N] = [", b, ", ", n, "], got ", size->sizes());
    TORCH_CHECK(size->scalar_type() == at::kFloat, "size must be float32, got ", size->scalar_type());
    TORCH_CHECK(size->device() == x.device(), "size must be on ", x.device());
  }
  check_index(src, "src_idx", b, x);
  check_index(dst, "dst_idx", b, x);
  check_index(unm, "unm_idx", b, x);
  TORCH_CHECK(src.size(1) == dst.size(1), "src_idx and dst_idx must have the same length, got ",
              src.size(1), " and ", dst.size(1));
  TORCH_CHECK(src.size(1) + unm.size(1) == lay.na, "src_idx (", src.size(1), ") and unm_idx (",
              unm.size(1), ") must together list the ", lay.na, " A tokens");
  TORCH_CHECK(src.size(1) == 0 || lay.nb > 0, "src_idx is not empty but there is no B token");
  TORCH_CHECK(channel_gate.has_value() == token_gate.has_value(),
              "channel_gate and token_gate must be given together");
  if (channel_gate.has_value()) {
    TORCH_CHECK(channel_gate->dim() == 3 && channel_gate->size(0) == b && channel_gate->size(1) == 1 &&
                    channel_gate->size(2) == c,
                "channel_gate must be [B, 1, C] = [", b, ", 1, ", c, "], got ", channel_gate->sizes());
    TORCH_CHECK(token_gate->dim() == 3 && token_gate->size(0) == b && token_gate->size(1) == src.size(1) &&
                    token_gate->size(2) == 1,
                "token_gate must be [B, r, 1] = [", b, ", ", src.size(1), ", 1], got ", token_gate->sizes());
    TORCH_CHECK(channel_gate->scalar_type() == x.scalar_type() && token_gate->scalar_type() == x.scalar_type(),
                "channel_gate and token_gate must have x's dtype ", x.scalar_type());
    TORCH_CHECK(channel_gate->device() == x.device() && token_gate->device() == x.device(),
                "channel_gate and token_gate must be on ", x.device());
  }
  return lay;
}

// The backward's extra arguments: grad [B, N - r, C] and the forward's size_out [B, N - r] (float32).
inline void check_merge_backward_inputs(const at::Tensor& grad, const at::Tensor& size_out, const at::Tensor& x,
                                        int64_t r) {
  const int64_t b = x.size(0), m = x.size(1) - r, c = x.size(2);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == b && grad.size(1) == m && grad.size(2) == c,
              "grad_out must be [B, N - r, C] = [", b, ", ", m, ", ", c, "], got ", grad.sizes());
  TORCH_CHECK(grad.device() == x.device(), "grad_out must be on ", x.device(), ", got ", grad.device());
  TORCH_CHECK(size_out.dim() == 2 && size_out.size(0) == b && size_out.size(1) == m,
              "size_out must be [B, N - r] = [", b, ", ", m, "], got ", size_out.sizes());
  TORCH_CHECK(size_out.scalar_type() == at::kFloat, "size_out must be float32, got ", size_out.scalar_type());
  TORCH_CHECK(size_out.device() == x.device(), "size_out must be on ", x.device(), ", got ", size_out.device());
}

inline void check_slot_map(const at::Tensor& slot_map, const char* name) {
  TORCH_CHECK(slot_map.dim() == 2, name, " must be 2-D [B, N], got ", slot_map.dim(), "-D");
  TORCH_CHECK(slot_map.scalar_type() == at::kLong, name, " must be int64, got ", slot_map.scalar_type());
}

inline Layout check_slot_map_inputs(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                                    int64_t num_protected, int64_t n) {
  TORCH_CHECK(n >= 0, "n must be >= 0, got ", n);
  TORCH_CHECK(num_protected >= 0 && num_protected <= n, "num_protected must be in [0, n=", n, "], got ",
              num_protected);
  check_index(src, "src_idx", src.size(0), src);
  check_index(dst, "dst_idx", src.size(0), src);
  check_index(unm, "unm_idx", src.size(0), src);
  const Layout lay(n, num_protected);
  TORCH_CHECK(dst.size(1) == src.size(1), "src_idx and dst_idx must have the same length");
  TORCH_CHECK(src.size(1) + unm.size(1) == lay.na, "src_idx and unm_idx must together list the ", lay.na,
              " A tokens");
  return lay;
}

inline void check_unmerge_inputs(const at::Tensor& x_merged, const at::Tensor& slot_map) {
  TORCH_CHECK(x_merged.dim() == 3, "x_merged must be 3-D [B, M, C], got ", x_merged.dim(), "-D");
  check_feature_dtype(x_merged, "x_merged");
  check_slot_map(slot_map, "slot_map");
  TORCH_CHECK(slot_map.size(0) == x_merged.size(0), "slot_map batch size ", slot_map.size(0),
              " does not match x_merged's ", x_merged.size(0));
  TORCH_CHECK(slot_map.device() == x_merged.device(), "slot_map must be on ", x_merged.device());
}

inline void check_unmerge_backward_inputs(const at::Tensor& grad, const at::Tensor& slot_map, int64_t m) {
  TORCH_CHECK(grad.dim() == 3, "grad must be 3-D [B, N, C]");
  check_slot_map(slot_map, "slot_map");
  TORCH_CHECK(slot_map.size(0) == grad.size(0) && slot_map.size(1) == grad.size(1),
              "slot_map must be [B, N] matching grad");
  TORCH_CHECK(m >= 0, "m must be >= 0");
}

}  // namespace leanops::merge
