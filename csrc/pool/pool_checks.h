// Argument checks shared by the CPU and CUDA pool kernels: every message names the argument.
#pragma once
#include <ATen/ATen.h>

#include <cmath>

#include "common/checks.h"

namespace leanops::pool {

struct PoolDims {
  int64_t b, h, d, dv, t;
};

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& q) {
  TORCH_CHECK(t.device() == q.device(), name, " must be on q's device ", q.device(), ", got ", t.device());
}

inline void check_optional(const c10::optional<at::Tensor>& t, const char* name, at::IntArrayRef shape,
                           const at::Tensor& like) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->sizes() == shape, name, " must have shape ", shape, ", got ", t->sizes());
  TORCH_CHECK(t->scalar_type() == like.scalar_type(), name, " must have q's dtype ", like.scalar_type(), ", got ",
              t->scalar_type());
  check_same_device(*t, name, like);
}

inline PoolDims check_pool_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& offsets, double scale, const c10::optional<at::Tensor>& bias,
                                  const c10::optional<at::Tensor>& freq_c,
                                  const c10::optional<at::Tensor>& prior_logit,
                                  const c10::optional<at::Tensor>& prior_value) {
  TORCH_CHECK(q.dim() == 3, "q must be 3-D [B, H, D], got ", q.dim(), "-D");
  TORCH_CHECK(k.dim() == 3, "k must be 3-D [T, H, D], got ", k.dim(), "-D");
  TORCH_CHECK(v.dim() == 3, "v must be 3-D [T, H, Dv], got ", v.dim(), "-D");
  common::check_feature_dtype(q, "q");
  TORCH_CHECK(k.scalar_type() == q.scalar_type(), "k must have q's dtype ", q.scalar_type(), ", got ",
              k.scalar_type());
  TORCH_CHECK(v.scalar_type() == q.scalar_type(), "v must have q's dtype ", q.scalar_type(), ", got ",
              v.scalar_type());
  check_same_device(k, "k", q);
  check_same_device(v, "v", q);
  check_same_device(offsets, "offsets", q);
  PoolDims dims{q.size(0), q.size(1), q.size(2), v.size(2), k.size(0)};
  TORCH_CHECK(k.size(1) == dims.h && k.size(2) == dims.d, "k must be [T, H=", dims.h, ", D=", dims.d, "], got ",
              k.sizes());
  TORCH_CHECK(v.size(0) == dims.t && v.size(1) == dims.h, "v must be [T=", dims.t, ", H=", dims.h, ", Dv], got ",
              v.sizes());
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) == dims.b + 1, "offsets must be 1-D [B+1] = [", dims.b + 1,
              "], got ", offsets.sizes());
  TORCH_CHECK(offsets.scalar_type() == at::kLong, "offsets must be int64, got ", offsets.scalar_type());
  TORCH_CHECK(std::isfinite(scale), "scale must be finite, got ", scale);
  check_optional(bias, "bias", {dims.t, dims.h}, q);
  check_optional(freq_c, "freq_c", {dims.t, dims.h}, q);
  check_optional(prior_logit, "prior_logit", {dims.b, dims.h}, q);
  check_optional(prior_value, "prior_value", {dims.b, dims.h, dims.dv}, q);
  TORCH_CHECK(prior_logit.has_value() == prior_value.has_value(), "prior_logit and prior_value must be given together");
  return dims;
}

// offsets[0] == 0, non-decreasing, offsets[B] == T (host-side; the CUDA path checks in Python).
inline void check_offsets_values(const int64_t* off, int64_t b, int64_t t) {
  TORCH_CHECK(off[0] == 0, "offsets must start at 0, got ", off[0]);
  for (int64_t i = 0; i < b; ++i)
    TORCH_CHECK(off[i + 1] >= off[i], "offsets must be non-decreasing: offsets[", i + 1, "] = ", off[i + 1],
                " < offsets[", i, "] = ", off[i]);
  TORCH_CHECK(off[b] == t, "offsets must end at T = ", t, ", got ", off[b]);
}

inline PoolDims check_pool_backward_inputs(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_lse,
                                           const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& offsets, double scale,
                                           const c10::optional<at::Tensor>& bias,
                                           const c10::optional<at::Tensor>& freq_c,
                                           const c10::optional<at::Tensor>& prior_logit,
                                           const c10::optional<at::Tensor>& prior_value, const at::Tensor& out,
                                           const at::Tensor& lse) {
  const PoolDims dims = check_pool_inputs(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value);
  TORCH_CHECK(out.dim() == 3 && out.size(0) == dims.b && out.size(1) == dims.h && out.size(2) == dims.dv,
              "out must be [B=", dims.b, ", H=", dims.h, ", Dv=", dims.dv, "], got ", out.sizes());
  TORCH_CHECK(grad_out.sizes() == out.sizes(), "grad_out must have out's shape ", out.sizes(), ", got ",
              grad_out.sizes());
  TORCH_CHECK(lse.dim() == 2 && lse.size(0) == dims.b && lse.size(1) == dims.h, "lse must be [B=", dims.b,
              ", H=", dims.h, "], got ", lse.sizes());
  TORCH_CHECK(!grad_lse.has_value() || grad_lse->sizes() == lse.sizes(), "grad_lse must have lse's shape ",
              lse.sizes(), ", got ", grad_lse.has_value() ? grad_lse->sizes() : lse.sizes());
  check_same_device(grad_out, "grad_out", q);
  check_same_device(out, "out", q);
  check_same_device(lse, "lse", q);
  if (grad_lse.has_value()) check_same_device(*grad_lse, "grad_lse", q);
  for (const auto& [t, name] : {std::pair<const at::Tensor*, const char*>{&grad_out, "grad_out"},
                                {&out, "out"}, {&lse, "lse"}})
    TORCH_CHECK(at::isFloatingType(t->scalar_type()), name, " must be a floating tensor, got ", t->scalar_type());
  if (grad_lse.has_value())
    TORCH_CHECK(at::isFloatingType(grad_lse->scalar_type()), "grad_lse must be a floating tensor, got ",
                grad_lse->scalar_type());
  return dims;
}

// lse is float32, or float64 for double inputs.
inline at::ScalarType lse_dtype(const at::Tensor& q) {
  return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Pointer to a contiguous copy of an optional tensor (kept alive by holder), or nullptr.
template <typename T>
const T* opt_ptr(const c10::optional<at::Tensor>& t, at::Tensor& holder) {
  if (!t.has_value()) return nullptr;
  holder = t->contiguous();
  return holder.data_ptr<T>();
}

}  // namespace leanops::pool
