// leanops._C: build information only. Ops live in csrc/ and register with TORCH_LIBRARY when this
// library is loaded; nothing that should be an op is exposed through pybind11.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <string>
#include <vector>

#ifndef LEANOPS_VERSION
#define LEANOPS_VERSION "0.0.0"
#endif
#ifndef LEANOPS_CUDA_ARCHS
#define LEANOPS_CUDA_ARCHS ""
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["version"] = LEANOPS_VERSION;
  info["torch_version_built"] = TORCH_VERSION;
#ifdef LEANOPS_WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = std::string(LEANOPS_CUDA_ARCHS);
#else
  info["cuda"] = false;
  info["cuda_archs"] = std::string();
#endif
  info["threads"] = at::get_num_threads();
  info["parallel_backend"] = at::get_parallel_info();
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "leanops compiled library: build information; ops are torch.ops.leanops.*";
  m.def("build_info", &build_info, "Version, torch version, CUDA archs and threads of this build");
}
