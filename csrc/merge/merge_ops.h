// Declarations of the merge kernels (CPU here; CUDA in merge_cuda.cu), for the registration
// and for the C++ unit tests.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace leanops::merge {

std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_match_cpu(const at::Tensor& metric, int64_t r,
                                                                    int64_t num_protected);
std::tuple<at::Tensor, at::Tensor> merge_wavg_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                                  const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                                                  int64_t num_protected, const c10::optional<at::Tensor>& channel_gate,
                                                  const c10::optional<at::Tensor>& token_gate);
std::tuple<at::Tensor, at::Tensor, at::Tensor> merge_wavg_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& size, const at::Tensor& size_out,
    const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm, int64_t num_protected,
    const c10::optional<at::Tensor>& channel_gate, const c10::optional<at::Tensor>& token_gate);
at::Tensor merge_slot_map_cpu(const at::Tensor& src, const at::Tensor& dst, const at::Tensor& unm,
                              int64_t num_protected, int64_t n);
at::Tensor unmerge_cpu(const at::Tensor& x_merged, const at::Tensor& slot_map);
at::Tensor unmerge_backward_cpu(const at::Tensor& grad, const at::Tensor& slot_map, int64_t m);

}  // namespace leanops::merge
