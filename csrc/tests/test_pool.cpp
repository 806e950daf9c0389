// C++ unit tests of the pool CPU kernels (run by ctest, under ASan + UBSan in CI).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "tests/test_util.h"
#include "pool/pool_launch.h"
#include "pool/pool_ops.h"

using namespace leanops::pool;

// Row 0: two behaviours with logits log 1 and log 3 and values 1 and 5 -> (1*1 + 3*5) / 4 = 4.
// Row 1: no behaviour, prior logit log 2 and value 7 -> 7, lse = log 2.
static void hand_worked_example() {
  auto q = at::ones({2, 1, 1});
  auto k = at::tensor({0.f, std::log(3.f)}).view({2, 1, 1});
  auto v = at::tensor({1.f, 5.f}).view({2, 1, 1});
  auto off = at::tensor({0L, 2L, 2L});
  auto out_lse = jagged_attention_pool_cpu(q, k, v, off, 1.0, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt);
  EXPECT(std::abs(std::get<0>(out_lse)[0].item<float>() - 4.f) < 1e-5);
  EXPECT(std::abs(std::get<1>(out_lse)[0].item<float>() - std::log(4.f)) < 1e-5);
  EXPECT(std::get<0>(out_lse)[1].item<float>() == 0.f);
  EXPECT(std::isinf(std::get<1>(out_lse)[1].item<float>()));
  auto pl = at::full({2, 1}, std::log(2.f));
  auto pv = at::full({2, 1, 1}, 7.f);
  auto with_prior = jagged_attention_pool_cpu(q, k, v, off, 1.0, c10::nullopt, c10::nullopt, pl, pv);
  EXPECT(std::abs(std::get<0>(with_prior)[0].item<float>() - (1.f + 15.f + 14.f) / 6.f) < 1e-5);
  EXPECT(std::abs(std::get<0>(with_prior)[1].item<float>() - 7.f) < 1e-5);
  EXPECT(std::abs(std::get<1>(with_prior)[1].item<float>() - std::log(2.f)) < 1e-5);
}

static void gradient_of_values_is_the_softmax() {
  auto q = at::randn({3, 2, 5}), k = at::randn({7, 2, 5}), v = at::randn({7, 2, 4});
  auto off = at::tensor({0L, 3L, 3L, 7L});
  auto res = jagged_attention_pool_cpu(q, k, v, off, 0.5, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt);
  auto grads = jagged_attention_pool_backward_cpu(at::ones_like(std::get<0>(res)), c10::nullopt, q, k, v, off, 0.5,
                                                  c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt,
                                                  std::get<0>(res), std::get<1>(res));
  // d(sum out)/dv_t = p_t for every channel; the p of a non-empty row sum to 1
  auto dv = std::get<2>(grads).select(2, 0);
  EXPECT(at::allclose(dv.slice(0, 0, 3).sum(0), at::ones({2})));
  EXPECT(at::allclose(dv.slice(0, 3, 7).sum(0), at::ones({2})));
}

static void errors_name_the_argument() {
  auto q = at::randn({2, 1, 3}), k = at::randn({4, 1, 3}), v = at::randn({4, 1, 2});
  auto run = [&](const at::Tensor& off) {
    jagged_attention_pool_cpu(q, k, v, off, 1.0, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt);
  };
  expect_error([&] { run(at::tensor({1L, 2L, 4L})); }, "offsets must start at 0");
  expect_error([&] { run(at::tensor({0L, 3L, 2L})); }, "non-decreasing");
  expect_error([&] { run(at::tensor({0L, 2L, 3L})); }, "offsets must end at T = 4");
  expect_error([&] { run(at::tensor({0L, 4L})); }, "offsets must be 1-D [B+1]");
  expect_error([&] {
    jagged_attention_pool_cpu(q, at::randn({4, 2, 3}), v, at::tensor({0L, 2L, 4L}), 1.0, c10::nullopt, c10::nullopt,
                              c10::nullopt, c10::nullopt);
  }, "k must be");
  // devices: a meta tensor stands in for a CUDA one (the dispatcher would send meta to the fake kernel)
  auto off = at::tensor({0L, 2L, 4L});
  expect_error([&] {
    jagged_attention_pool_cpu(q, k.to(at::kMeta), v, off, 1.0, c10::nullopt, c10::nullopt, c10::nullopt,
                              c10::nullopt);
  }, "k must be on q's device cpu, got meta");
  expect_error([&] {
    jagged_attention_pool_cpu(q, k, v, off.to(at::kMeta), 1.0, c10::nullopt, c10::nullopt, c10::nullopt,
                              c10::nullopt);
  }, "offsets must be on q's device cpu, got meta");
  auto res = jagged_attention_pool_cpu(q, k, v, off, 1.0, c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt);
  auto out = std::get<0>(res), lse = std::get<1>(res);
  expect_error([&] {
    jagged_attention_pool_backward_cpu(out.to(at::kMeta), c10::nullopt, q, k, v, off, 1.0, c10::nullopt, c10::nullopt,
                                       c10::nullopt, c10::nullopt, out, lse);
  }, "grad_out must be on q's device cpu, got meta");
  expect_error([&] {
    jagged_attention_pool_backward_cpu(out, lse.to(at::kMeta), q, k, v, off, 1.0, c10::nullopt, c10::nullopt,
                                       c10::nullopt, c10::nullopt, out, lse);
  }, "grad_lse must be on q's device cpu, got meta");
  expect_error([&] {
    jagged_attention_pool_cpu(q, k, v, off, std::nan(""), c10::nullopt, c10::nullopt, c10::nullopt, c10::nullopt);
  }, "scale must be finite");
}

// The CUDA launch configuration (no GPU needed): pairs on gridDim.x, accumulator chunks within 48 KB.
static void launch_configuration() {
  const PoolLaunch big_batch = pool_launch(70000 * 4, 32, 4);
  EXPECT(big_batch.blocks == 280000);  // above gridDim.y's 65535: on x
  EXPECT(big_batch.chunk == 32 && big_batch.passes == 1 && big_batch.smem_bytes == 128);
  const PoolLaunch huge = pool_launch(int64_t(1) << 40, 8, 4);
  EXPECT(huge.blocks == kMaxGridX);  // the kernels stride over the rest
  EXPECT(pool_launch(0, 0, 4).blocks == 1 && pool_launch(0, 0, 4).passes == 1 && pool_launch(0, 0, 4).chunk == 1);
  const PoolLaunch fits = pool_launch(8, 12288, 4);  // 48 KB of float: one pass
  EXPECT(fits.passes == 1 && fits.smem_bytes == 48 * 1024);
  const PoolLaunch over = pool_launch(8, 12289, 4);  // one more: two chunks, still 48 KB
  EXPECT(over.passes == 2 && over.chunk == 12288 && over.smem_bytes <= kMaxChunkBytes);
  const PoolLaunch dbl = pool_launch(8, 100000, 8);  // double: 6144 per chunk
  EXPECT(dbl.chunk == 6144 && dbl.passes == 17 && dbl.chunk * dbl.passes >= 100000);
  EXPECT(dbl.smem_bytes <= kMaxChunkBytes);
}

// The NaN/inf contract on the CPU kernel (the Python tests hold it against the reference on every backend).
static void non_finite_logits() {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto q = at::ones({3, 1, 1});
  auto k = at::zeros({6, 1, 1});
  auto v = at::tensor({1.f, nan, 5.f, 2.f, 3.f, 4.f}).view({6, 1, 1});
  auto bias = at::tensor({0.f, -inf, 0.f, -inf, nan, inf}).view({6, 1});
  auto off = at::tensor({0L, 3L, 4L, 6L});  // rows: {0, masked(NaN value), 0}, {masked}, {NaN logit, +inf logit}
  auto res = jagged_attention_pool_cpu(q, k, v, off, 1.0, bias, c10::nullopt, c10::nullopt, c10::nullopt);
  auto out = std::get<0>(res), lse = std::get<1>(res);
  EXPECT(std::abs(out[0].item<float>() - 3.f) < 1e-6);  // (1 + 5) / 2: the masked NaN value is not read
  EXPECT(std::abs(lse[0].item<float>() - std::log(2.f)) < 1e-6);
  EXPECT(out[1].item<float>() == 0.f && std::isinf(lse[1].item<float>()) && lse[1].item<float>() < 0);
  EXPECT(std::isnan(out[2].item<float>()) && std::isnan(lse[2].item<float>()));
}

int main() {
  hand_worked_example();
  gradient_of_values_is_the_softmax();
  errors_name_the_argument();
  launch_configuration();
  non_finite_logits();
  return report("test_pool");
}
