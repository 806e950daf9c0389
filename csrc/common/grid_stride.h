// Launch configuration for grid-stride CUDA kernels, as plain host C++ (unit-tested on CPU in csrc/tests).
//
// A kernel that takes `items` work items runs `for (item = blockIdx.x [* per_block + lane]; item < items;
// item += gridDim.x [* per_block])` over gridDim.x only: gridDim.y and .z are capped at 65535, gridDim.x at
// 2^31 - 1, so a batch (or a token count) on y fails past 65535 while a flat range on x with a stride loop
// covers any count. Work-item indices are int64 in the kernels: B * N * C passes 2^31 at ordinary sizes.
#pragma once
#include <algorithm>
#include <cstdint>

namespace leanops::common {

constexpr int64_t kMaxGridX = 2147483647;  // CUDA's limit on gridDim.x

// Blocks to launch for `items` work items taken `per_block` at a time by each block: enough for one pass,
// at least 1 (a launch needs one block), at most `max_blocks` (the kernel's stride loop does the rest).
inline int64_t grid_stride_blocks(int64_t items, int64_t per_block, int64_t max_blocks = kMaxGridX) {
  const int64_t want = items <= 0 ? 1 : 1 + (items - 1) / per_block;
  return std::max<int64_t>(1, std::min(want, max_blocks));
}

}  // namespace leanops::common
