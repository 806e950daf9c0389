// C++ unit tests of the pool CPU kernels (run by ctest, under ASan + UBSan in CI).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>

#include "tests/test_util.h"
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
}

int main() {
  hand_worked_example();
  gradient_of_values_is_the_softmax();
  errors_name_the_argument();
  return report("test_pool");
}
