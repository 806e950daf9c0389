// Launch configuration of the CUDA pool kernels, as a pure host function (unit-tested in
// csrc/tests/test_pool.cpp without a GPU).
#pragma once
#include <algorithm>
#include <cstdint>

namespace leanops::pool {

// CUDA's gridDim.x limit. The (row, head) pairs go on x (gridDim.y stops at 65535, an ordinary batch
// size in CTR scoring); beyond 2^31 - 1 pairs the kernels stride over them.
constexpr int64_t kMaxGridX = 2147483647;
// Dynamic shared memory a kernel gets without cudaFuncSetAttribute opt-in. The accumulator (Dv values in
// the forward, D in the backward) is split into chunks of at most this size; a larger dimension loops
// over chunks (recomputing the logits per chunk), so any D and Dv work and no opt-in is needed. Larger
// chunks would only help dimensions above 12288 float32 values and would cut the blocks per SM.
constexpr int64_t kMaxChunkBytes = 48 * 1024;

struct PoolLaunch {
  int64_t blocks;      // gridDim.x (one warp per block); the kernel strides over the pairs
  int64_t chunk;       // accumulator elements per pass, >= 1
  int64_t passes;      // ceil(dim / chunk), >= 1 (one pass even when dim == 0, to write lse/dq)
  int64_t smem_bytes;  // chunk * acc_bytes <= kMaxChunkBytes
};

// pairs = B * H; dim = the accumulated dimension (Dv forward, D backward); acc_bytes = sizeof(acc_t).
inline PoolLaunch pool_launch(int64_t pairs, int64_t dim, int64_t acc_bytes) {
  PoolLaunch cfg{};
  cfg.blocks = std::min(std::max<int64_t>(pairs, 1), kMaxGridX);
  cfg.chunk = std::max<int64_t>(1, std::min(dim, kMaxChunkBytes / acc_bytes));
  cfg.passes = std::max<int64_t>(1, (dim + cfg.chunk - 1) / cfg.chunk);
  cfg.smem_bytes = cfg.chunk * acc_bytes;
  return cfg;
}

}  // namespace leanops::pool
