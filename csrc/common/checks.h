// Argument checks shared by every op family's CPU and CUDA kernels: every message names the argument.
#pragma once
#include <ATen/ATen.h>

namespace leanops::common {

inline void check_feature_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble ||
                  t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16,
              name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

}  // namespace leanops::common
