// C++ unit tests of the merge CPU kernels (run by ctest, under ASan + UBSan in CI).
// A hand-worked example, invariants on random inputs, and errors on bad input.
#include <ATen/ATen.h>

#include <cstdio>

#include <cmath>
#include <limits>

#include "common/grid_stride.h"
#include "tests/test_util.h"
#include "merge/merge_ops.h"

using namespace leanops::merge;

// Tokens: 0 (protected), A = {2, 4}, B = {1, 3}. Token 2 equals token 3 exactly, token 4 is
// orthogonal to everything, so with r = 1 token 2 must merge into 3.
static void hand_worked_example() {
  auto metric = at::tensor({1.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f, 0.f}).view({1, 5, 3});
  auto [src, dst, unm] = bipartite_match_cpu(metric, 1, 1);
  EXPECT(src.item<int64_t>() == 2);
  EXPECT(dst.item<int64_t>() == 3);
  EXPECT(unm.item<int64_t>() == 4);
  auto x = at::arange(10, at::kFloat).view({1, 5, 2});
  auto size = at::tensor({1.f, 1.f, 3.f, 1.f, 1.f}).view({1, 5});
  auto [out, out_size] = merge_wavg_cpu(x, size, src, dst, unm, 1, c10::nullopt, c10::nullopt);
  // order: protected 0, unmerged 4, B 1, B 3 (with 2 merged in: (3*x2 + 1*x3) / 4)
  auto want = at::tensor({0.f, 1.f, 8.f, 9.f, 2.f, 3.f, (3 * 4.f + 6.f) / 4, (3 * 5.f + 7.f) / 4}).view({1, 4, 2});
  EXPECT(at::allclose(out, want));
  EXPECT(at::allclose(out_size, at::tensor({1.f, 1.f, 1.f, 4.f}).view({1, 4})));
  auto slot = merge_slot_map_cpu(src, dst, unm, 1, 5);
  EXPECT(at::equal(slot, at::tensor({0L, 2L, 3L, 3L, 1L}).view({1, 5})));
}

static void invariants_on_random_inputs() {
  at::manual_seed(0);
  for (int64_t n : {1, 2, 7, 64, 197}) {
    for (int64_t p : {0, 1, 3}) {
      if (p > n) continue;
      auto metric = at::randn({3, n, 16});
      auto [src, dst, unm] = bipartite_match_cpu(metric, n / 3, p);
      auto x = at::randn({3, n, 8});
      auto [out, size] = merge_wavg_cpu(x, c10::nullopt, src, dst, unm, p, c10::nullopt, c10::nullopt);
      EXPECT(out.size(1) == n - src.size(1));
      EXPECT(at::allclose(size.sum(1), at::full({3}, float(n))));  // merging conserves size
      // the size-weighted sum of tokens is conserved
      EXPECT(at::allclose((out * size.unsqueeze(-1)).sum(1), x.sum(1), 1e-4, 1e-4));
      auto slot = merge_slot_map_cpu(src, dst, unm, p, n);
      auto back = unmerge_cpu(out, slot);
      EXPECT(back.size(1) == n);
      auto g = unmerge_backward_cpu(at::ones_like(back), slot, out.size(1));
      EXPECT(at::allclose(g.select(2, 0), size));  // each slot receives one gradient per token
    }
  }
}

static void errors_name_the_argument() {
  auto metric = at::randn({2, 11, 4});
  expect_error([&] { bipartite_match_cpu(metric[0], 3, 1); }, "metric must be 3-D");
  expect_error([&] { bipartite_match_cpu(metric, -1, 1); }, "r must be >= 0");
  expect_error([&] { bipartite_match_cpu(metric, 11, 1); }, "larger than");
  expect_error([&] { bipartite_match_cpu(metric, 3, 12); }, "protected");
  expect_error([&] { bipartite_match_cpu(metric.to(at::kLong), 3, 1); }, "metric must be float32");
  auto [src, dst, unm] = bipartite_match_cpu(metric, 3, 1);
  auto x = at::randn({2, 11, 4});
  auto bad = at::full({2, 3}, 40L);
  expect_error([&] { merge_wavg_cpu(x, c10::nullopt, bad, dst, unm, 1, c10::nullopt, c10::nullopt); }, "src_idx holds 40");
  expect_error([&] { merge_wavg_cpu(x, c10::nullopt, src, src, unm, 1, c10::nullopt, c10::nullopt); }, "dst_idx holds");
  expect_error([&] { merge_wavg_cpu(x, at::ones({2, 10}), src, dst, unm, 1, c10::nullopt, c10::nullopt); }, "size must be");
  expect_error([&] { unmerge_cpu(x, at::full({2, 5}, 11L)); }, "slot_map holds 11");
  // empty batch works
  auto [s0, d0, u0] = bipartite_match_cpu(at::randn({0, 11, 4}), 3, 1);
  EXPECT(s0.size(0) == 0 && s0.size(1) == 3 && u0.size(1) == 2);
}

// r' = 0 is the identity: nothing merged, tokens in their original order, slot map = arange.
static void zero_r_is_identity() {
  auto metric = at::randn({2, 9, 4});
  auto [src, dst, unm] = bipartite_match_cpu(metric, 0, 1);
  EXPECT(src.size(1) == 0 && unm.size(1) == 4);
  auto x = at::randn({2, 9, 3});
  auto size = at::rand({2, 9}) + 0.5;
  auto [out, out_size] = merge_wavg_cpu(x, size, src, dst, unm, 1, c10::nullopt, c10::nullopt);
  EXPECT(at::equal(out, x) && at::equal(out_size, size));
  EXPECT(at::equal(merge_slot_map_cpu(src, dst, unm, 1, 9), at::arange(9).expand({2, 9})));
  auto [gx, gcg, gtg] = merge_wavg_backward_cpu(out, x, size, out_size, src, dst, unm, 1, c10::nullopt, c10::nullopt);
  EXPECT(at::equal(gx, out));
  // r clamped to 0: with num_protected = 2 and N = 3 the one token left (index 2, even) is in A and
  // there is no B token to merge into
  auto [s2, d2, u2] = bipartite_match_cpu(at::randn({1, 3, 2}), 1, 2);
  EXPECT(s2.size(1) == 0 && u2.size(1) == 1);
}

// NaN scores rank above every number (a zero metric row has NaN cosines), ties to the lower index:
// ranks stay a permutation, every output slot is written.
static void nan_scores_rank_first() {
  auto metric = at::ones({1, 9, 2});
  metric[0][4].zero_();                                   // A token 4: NaN with every B
  metric[0][6][0] = std::numeric_limits<float>::quiet_NaN();  // A token 6: NaN too
  auto [src, dst, unm] = bipartite_match_cpu(metric, 3, 1);
  EXPECT(src[0][0].item<int64_t>() == 4 && src[0][1].item<int64_t>() == 6 && src[0][2].item<int64_t>() == 2);
  EXPECT(dst[0][0].item<int64_t>() == 1 && dst[0][2].item<int64_t>() == 1);  // first NaN / first maximum
  EXPECT(unm[0][0].item<int64_t>() == 8);
}

// The CUDA launch configuration (grid-stride loops on gridDim.x), as a host function.
static void grid_stride_launch_config() {
  using leanops::common::grid_stride_blocks;
  using leanops::common::kMaxGridX;
  EXPECT(grid_stride_blocks(0, 256) == 1);
  EXPECT(grid_stride_blocks(1, 256) == 1);
  EXPECT(grid_stride_blocks(257, 256) == 2);
  EXPECT(grid_stride_blocks(70000, 1) == 70000);  // a batch past gridDim.y's 65535, on x
  const int64_t huge = int64_t(1) << 40;           // B * N past 2^31: capped, the stride loop covers the rest
  EXPECT(grid_stride_blocks(huge, 1) == kMaxGridX);
  EXPECT(grid_stride_blocks(huge, 1024) == huge / 1024);  // 2^30 blocks: under the cap, one pass
  EXPECT(grid_stride_blocks(huge, 256) == kMaxGridX);     // 2^32 wanted: capped
}

int main() {
  zero_r_is_identity();
  nan_scores_rank_first();
  grid_stride_launch_config();
  hand_worked_example();
  invariants_on_random_inputs();
  errors_name_the_argument();
  return report("test_merge");
}
