// C++ CPU kernels of the verify family (Minions): per row, only the logits rows that the decision needs
// are read, once each (no softmax over [B, S+1, V] is materialised).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "verify_checks.h"

namespace leanops::verify {
namespace {

// Exact torch semantics (first maximum; NaN above every number): the slow path, used when a NaN is seen.
template <typename scalar_t>
int64_t argmax_row_exact(const scalar_t* row, int64_t v) {
  int64_t best = 0;
  double bv = double(row[0]);
  for (int64_t j = 1; j < v && !std::isnan(bv); ++j) {
    const double x = double(row[j]);
    if (x > bv || std::isnan(x)) {
      bv = x;
      best = j;
    }
  }
  return best;
}

// First maximum of a row: eight independent running maxima (a loop the compiler turns into vector
// max instructions), then a scan for the first index holding that maximum.
template <typename scalar_t>
int64_t argmax_row(const scalar_t* row, int64_t v) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kLanes = 8;
  acc_t lane[kLanes];
  bool nan = false;
  for (int i = 0; i < kLanes; ++i) lane[i] = -std::numeric_limits<acc_t>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= v; j += kLanes)
    for (int i = 0; i < kLanes; ++i) {
      const acc_t x = acc_t(row[j + i]);
      nan |= x != x;
      lane[i] = x > lane[i] ? x : lane[i];
    }
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  for (; j < v; ++j) {
    const acc_t x = acc_t(row[j]);
    nan |= x != x;
    m = x > m ? x : m;
  }
  if (nan) return argmax_row_exact(row, v);
  for (int i = 0; i < kLanes; ++i) m = lane[i] > m ? lane[i] : m;
  for (j = 0; j < v; ++j)
    if (acc_t(row[j]) == m) return j;
  return 0;  // every entry is -inf
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> majority_vote_cpu(const at::Tensor& drafts, const at::Tensor& draft_len,
                                                                  const at::Tensor& weights) {
  check_vote_inputs(drafts, draft_len, weights);
  const int64_t bsz = drafts.size(0), k = drafts.size(1), s = drafts.size(2);
  const at::Tensor d = drafts.contiguous(), len = draft_len.contiguous();
  const at::Tensor w = (weights.dim() == 1 ? weights.expand({bsz, k}) : weights).to(at::kDouble).contiguous();
  at::Tensor winner = at::empty({bsz}, drafts.options()), cand = at::zeros({bsz, s}, drafts.options());
  at::Tensor cand_len = at::empty({bsz}, drafts.options());
  const int64_t *dp = d.data_ptr<int64_t>(), *lp = len.data_ptr<int64_t>();
  const double* wp = w.data_ptr<double>();
  for (int64_t i = 0; i < bsz * k; ++i)
    TORCH_CHECK(lp[i] >= 0 && lp[i] <= s, "draft_len holds ", lp[i], ", outside [0, S=", s, "]");
  at::parallel_for(0, bsz, 16, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> alive, next;
    std::vector<int64_t> keys;  // child key per alive draft: token, or -1 for "stop here"
    std::vector<double> child_w;
    std::vector<int64_t> child_key, child_low;
    for (int64_t b = begin; b < end; ++b) {
      alive.clear();
      for (int64_t i = 0; i < k; ++i) alive.push_back(i);
      int64_t depth = 0, win = -1;
      while (win < 0) {
        child_w.clear();
        child_key.clear();
        child_low.clear();
        for (int64_t i : alive) {  // K is small: a linear scan over the children beats a map
          const int64_t key = lp[b * k + i] == depth ? -1 : dp[(b * k + i) * s + depth];
          size_t c = 0;
          while (c < child_key.size() && child_key[c] != key) ++c;
          if (c == child_key.size()) {
            child_key.push_back(key);
            child_w.push_back(0.0);
            child_low.push_back(i);
          }
          child_w[c] += wp[b * k + i];
        }
        size_t best = 0;
        for (size_t c = 1; c < child_key.size(); ++c)
          if (child_w[c] > child_w[best] || (child_w[c] == child_w[best] && child_low[c] < child_low[best])) best = c;
        if (child_key[best] == -1) {
          win = child_low[best];  // lowest index among the drafts that end here
          break;
        }
        next.clear();
        for (int64_t i : alive)
          if (lp[b * k + i] > depth && dp[(b * k + i) * s + depth] == child_key[best]) next.push_back(i);
        alive.swap(next);
        ++depth;
      }
      winner.data_ptr<int64_t>()[b] = win;
      const int64_t l = lp[b * k + win];
      cand_len.data_ptr<int64_t>()[b] = l;
      for (int64_t j = 0; j < l; ++j) cand.data_ptr<int64_t>()[b * s + j] = dp[(b * k + win) * s + j];
    }
  });
  return {winner, cand, cand_len};
}

std::tuple<at::Tensor, at::Tensor> verify_greedy_cpu(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                                     const at::Tensor& target_logits) {
  check_verify_inputs(candidate, candidate_len, target_logits);
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  at::Tensor accepted = at::empty({bsz}, candidate.options()), next = at::empty({bsz}, candidate.options());
  const at::Tensor c = candidate.contiguous(), len = candidate_len.contiguous(), lg = target_logits.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_greedy_cpu", [&] {
    const scalar_t* lp = lg.data_ptr<scalar_t>();
    at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t* tok = c.data_ptr<int64_t>() + b * s;
        const int64_t l = len.data_ptr<int64_t>()[b];
        check_row(tok, l, s, v, b);
        int64_t a = 0, t = argmax_row(lp + (b * (s + 1)) * v, v);
        while (a < l && t == tok[a]) {  // stop reading logits at the first mismatch
          ++a;
          t = argmax_row(lp + (b * (s + 1) + a) * v, v);
        }
        accepted.data_ptr<int64_t>()[b] = a;
        next.data_ptr<int64_t>()[b] = t;
      }
    });
  });
  return {accepted, next};
}

std::tuple<at::Tensor, at::Tensor> verify_greedy_ragged_cpu(const at::Tensor& candidates, const at::Tensor& cu_lens,
                                                            const at::Tensor& target_logits) {
  const int64_t bsz = check_ragged_inputs(candidates, cu_lens, target_logits), t_total = candidates.size(0);
  const int64_t v = target_logits.size(1);
  const at::Tensor c = candidates.contiguous(), cu = cu_lens.contiguous(), lg = target_logits.contiguous();
  const int64_t* cp = cu.data_ptr<int64_t>();
  TORCH_CHECK(cp[0] == 0, "cu_lens must start at 0, got ", cp[0]);
  for (int64_t b = 0; b < bsz; ++b)
    TORCH_CHECK(cp[b + 1] >= cp[b], "cu_lens must be non-decreasing at ", b + 1);
  TORCH_CHECK(cp[bsz] == t_total, "cu_lens must end at T = ", t_total, ", got ", cp[bsz]);
  at::Tensor accepted = at::empty({bsz}, candidates.options()), next = at::empty({bsz}, candidates.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_greedy_ragged_cpu", [&] {
    const scalar_t* lp = lg.data_ptr<scalar_t>();
    at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t lo = cp[b], l = cp[b + 1] - lo;
        const int64_t* tok = c.data_ptr<int64_t>() + lo;
        check_row(tok, l, l, v, b);
        const scalar_t* rows = lp + (lo + b) * v;
        int64_t a = 0, t = argmax_row(rows, v);
        while (a < l && t == tok[a]) {
          ++a;
          t = argmax_row(rows + a * v, v);
        }
        accepted.data_ptr<int64_t>()[b] = a;
        next.data_ptr<int64_t>()[b] = t;
      }
    });
  });
  return {accepted, next};
}

std::tuple<at::Tensor, at::Tensor> verify_sampling_cpu(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                                       const at::Tensor& draft_probs, const at::Tensor& target_logits,
                                                       double temperature, const at::Tensor& uniforms) {
  check_sampling_inputs(candidate, candidate_len, draft_probs, target_logits, temperature, uniforms);
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  at::Tensor accepted = at::empty({bsz}, candidate.options()), next = at::empty({bsz}, candidate.options());
  const at::Tensor c = candidate.contiguous(), len = candidate_len.contiguous(), lg = target_logits.contiguous();
  const at::Tensor q = draft_probs.to(at::kDouble).contiguous(), u = uniforms.to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_sampling_cpu", [&] {
    const scalar_t* lp = lg.data_ptr<scalar_t>();
    const double inv_t = 1.0 / temperature;
    at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> resid(v);
      for (int64_t b = begin; b < end; ++b) {
        const int64_t* tok = c.data_ptr<int64_t>() + b * s;
        const int64_t l = len.data_ptr<int64_t>()[b];
        check_row(tok, l, s, v, b);
        const double* ub = u.data_ptr<double>() + b * (s + 1);
        const double* qb = q.data_ptr<double>() + b * s * v;
        // log-sum-exp of one position's tempered logits, in one pass (online max)
        auto lse_at = [&](int64_t i) {
          const scalar_t* row = lp + (b * (s + 1) + i) * v;
          double m = -std::numeric_limits<double>::infinity(), sum = 0;
          for (int64_t j = 0; j < v; ++j) {
            const double x = double(row[j]) * inv_t;
            if (x == -std::numeric_limits<double>::infinity()) continue;  // masked (top-p): adds nothing
            if (x > m) {
              sum = sum * std::exp(m - x) + 1;
              m = x;
            } else {
              sum += std::exp(x - m);
            }
          }
          return m + std::log(sum);
        };
        int64_t a = 0;
        double lse = 0;
        for (; a < l; ++a) {
          lse = lse_at(a);
          const double p_x = std::exp(double(lp[(b * (s + 1) + a) * v + tok[a]]) * inv_t - lse);
          if (!(ub[a] * qb[a * v + tok[a]] <= p_x)) break;
        }
        if (a == l) lse = lse_at(a);
        // next token: from max(0, p - q) after a rejection, from p for the bonus token
        const scalar_t* row = lp + (b * (s + 1) + a) * v;
        const double* qa = a < l ? qb + a * v : nullptr;
        double total = 0;
        for (int64_t j = 0; j < v; ++j) {
          const double p = std::exp(double(row[j]) * inv_t - lse);
          resid[j] = qa ? std::max(0.0, p - qa[j]) : p;
          total += resid[j];
        }
        if (!(total > 0)) {  // p == q leaves nothing to correct: fall back on p
          total = 0;
          for (int64_t j = 0; j < v; ++j) total += (resid[j] = std::exp(double(row[j]) * inv_t - lse));
        }
        const double threshold = ub[s] * total;
        double cdf = 0;
        int64_t pick = v - 1;
        for (int64_t j = 0; j < v; ++j) {
          cdf += resid[j];
          if (cdf > threshold) {
            pick = j;
            break;
          }
        }
        accepted.data_ptr<int64_t>()[b] = a;
        next.data_ptr<int64_t>()[b] = pick;
      }
    });
  });
  return {accepted, next};
}

TORCH_LIBRARY_IMPL(leanops, CPU, lib) {
  lib.impl("majority_vote", &majority_vote_cpu);
  lib.impl("verify_greedy", &verify_greedy_cpu);
  lib.impl("verify_greedy_ragged", &verify_greedy_ragged_cpu);
  lib.impl("verify_sampling", &verify_sampling_cpu);
}

}  // namespace leanops::verify
