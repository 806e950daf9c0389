// Declarations of the pool kernels, for the C++ unit tests.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace leanops::pool {

std::tuple<at::Tensor, at::Tensor> jagged_attention_pool_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& offsets, double scale,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& freq_c,
    const c10::optional<at::Tensor>& prior_logit, const c10::optional<at::Tensor>& prior_value);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
jagged_attention_pool_backward_cpu(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_lse,
                                   const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& offsets, double scale, const c10::optional<at::Tensor>& bias,
                                   const c10::optional<at::Tensor>& freq_c,
                                   const c10::optional<at::Tensor>& prior_logit,
                                   const c10::optional<at::Tensor>& prior_value, const at::Tensor& out,
                                   const at::Tensor& lse);

}  // namespace leanops::pool
