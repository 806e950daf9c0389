// Argument checks shared by every op family's CPU and CUDA kernels: every message names the argument.
#pragma once
#include <ATen/ATen.h>

namespace leanops::common {

inline void check_feature_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble ||
                  t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16,
              name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

// Every tensor argument on one device: a CPU tensor must never reach a CUDA kernel as a host pointer.
inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(t.device() == like.device(), name, " is on ", t.device(), " but ", like_name, " is on ", like.device());
}

}  // namespace leanops::common
