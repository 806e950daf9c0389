// C++ CPU kernels of the verify family (Minions): each batch row walks its positions in order and stops at
// the first mismatch (greedy) or rejection (sampling), so only the logits rows that the decision needs are
// read (no softmax over [B, S+1, V] is materialised); see docs/DESIGN.md for what each kernel reads.
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
  for (int64_t i = 0; i < bsz * k; ++i) {
    TORCH_CHECK(lp[i] >= 0 && lp[i] <= s, "draft_len holds ", lp[i], ", outside [0, S=", s, "]");
    TORCH_CHECK(std::isfinite(wp[i]) && wp[i] >= 0, "weights must be finite and >= 0, got ", wp[i]);
    for (int64_t j = 0; j < lp[i]; ++j)
      TORCH_CHECK(dp[i * s + j] >= 0, "drafts[", i / k, ", ", i % k, ", ", j, "] = ", dp[i * s + j],
                  " is negative: draft tokens must be >= 0");
  }
  at::parallel_for(0, bsz, 16, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> alive, next;
    // children of the current node: "stop here" or a next token; weight and lowest draft index of each
    std::vector<char> child_stop;
    std::vector<int64_t> child_tok, child_low;
    std::vector<double> child_w;
    for (int64_t b = begin; b < end; ++b) {
      alive.clear();
      for (int64_t i = 0; i < k; ++i) alive.push_back(i);
      int64_t depth = 0, win = -1;
      while (win < 0) {
        child_stop.clear();
        child_tok.clear();
        child_low.clear();
        child_w.clear();
        for (int64_t i : alive) {  // K is small: a linear scan over the children beats a map
          const bool stop = lp[b * k + i] == depth;
          const int64_t tok = stop ? 0 : dp[(b * k + i) * s + depth];
          size_t c = 0;
          while (c < child_stop.size() && !(child_stop[c] == char(stop) && (stop || child_tok[c] == tok))) ++c;
          if (c == child_stop.size()) {
            child_stop.push_back(char(stop));
            child_tok.push_back(tok);
            child_w.push_back(0.0);
            child_low.push_back(i);
          }
          child_w[c] += wp[b * k + i];
        }
        size_t best = 0;  // children are met in order of their lowest draft index: ties keep the first
        for (size_t c = 1; c < child_stop.size(); ++c)
          if (child_w[c] > child_w[best]) best = c;
        if (child_stop[best]) {
          win = child_low[best];  // lowest index among the drafts that end here
          break;
        }
        next.clear();
        for (int64_t i : alive)
          if (lp[b * k + i] > depth && dp[(b * k + i) * s + depth] == child_tok[best]) next.push_back(i);
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

std::tuple<at::Tensor, at::Tensor> verify_greedy_ragged_cpu(const at::Tensor& candidates, const at::Tensor& offsets,
                                                            const at::Tensor& target_logits) {
  const int64_t bsz = check_ragged_inputs(candidates, offsets, target_logits), t_total = candidates.size(0);
  const int64_t v = target_logits.size(1);
  const at::Tensor c = candidates.contiguous(), off = offsets.contiguous(), lg = target_logits.contiguous();
  const int64_t* cp = off.data_ptr<int64_t>();
  TORCH_CHECK(cp[0] == 0, "offsets must start at 0, got ", cp[0]);
  for (int64_t b = 0; b < bsz; ++b)
    TORCH_CHECK(cp[b + 1] >= cp[b], "offsets must be non-decreasing, but offsets[", b + 1, "] = ", cp[b + 1],
                " < offsets[", b, "] = ", cp[b]);
  TORCH_CHECK(cp[bsz] == t_total, "offsets must end at T = ", t_total, ", got ", cp[bsz]);
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

namespace {

// Log-sum-exp of one position's tempered logits z = logit / temperature, in one pass (online max).
// Returns false when the position has no distribution: a NaN or +inf z, or every z = -inf.
template <typename scalar_t>
bool row_lse(const scalar_t* row, int64_t v, double temperature, double* lse) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double m = -kInf, sum = 0;
  for (int64_t j = 0; j < v; ++j) {
    const double x = double(row[j]) / temperature;
    if (x == -kInf) continue;    // masked (top-p): adds nothing
    if (!(x < kInf)) return false;  // NaN or +inf
    if (x > m) {
      sum = sum * std::exp(m - x) + 1;
      m = x;
    } else {
      sum += std::exp(x - m);
    }
  }
  *lse = m + std::log(sum);
  return m > -kInf;
}

// One batch row of verify_sampling: positions in order, stopping at the first rejection (or undefined
// position); draft probabilities are read in their own dtype, and only q(x_i) and the row of the rejection.
template <typename logit_t, typename prob_t>
void sample_row(const logit_t* rows, const prob_t* qb, const double* ub, const int64_t* tok, int64_t l, int64_t s,
                int64_t v, double temperature, int64_t b, std::vector<double>& resid, int64_t* accepted,
                int64_t* next) {
  int64_t a = 0;
  double lse = 0;
  bool defined = true;
  for (; a < l; ++a) {
    defined = row_lse(rows + a * v, v, temperature, &lse);
    if (!defined) break;
    const double p_x = std::exp(double(rows[a * v + tok[a]]) / temperature - lse);
    const double q_x = double(qb[a * v + tok[a]]);
    check_prob(q_x, b, a, tok[a]);
    check_uniform(ub[a], b, a);
    if (!(ub[a] * q_x <= p_x)) break;
  }
  if (a == l) defined = row_lse(rows + a * v, v, temperature, &lse);
  *accepted = a;
  if (!defined) {  // no distribution to draw from: the sentinel -1 (the Python wrapper raises on it)
    *next = -1;
    return;
  }
  // next token: from max(0, p - q) after a rejection, from p for the bonus token
  const logit_t* row = rows + a * v;
  const prob_t* qa = a < l ? qb + a * v : nullptr;
  double total = 0;
  for (int64_t j = 0; j < v; ++j) {
    const double p = std::exp(double(row[j]) / temperature - lse);
    double r = p;
    if (qa) {
      const double q = double(qa[j]);
      check_prob(q, b, a, j);
      r = std::max(0.0, p - q);
    }
    total += (resid[j] = r);
  }
  if (!(total > 0)) {  // p == q leaves nothing to correct: fall back on p
    total = 0;
    for (int64_t j = 0; j < v; ++j) total += (resid[j] = std::exp(double(row[j]) / temperature - lse));
  }
  check_uniform(ub[s], b, s);
  const double threshold = ub[s] * total;
  double cdf = 0;
  int64_t pick = -1, last = -1;  // last token with mass: the pick if rounding left cdf <= threshold
  for (int64_t j = 0; j < v && pick < 0; ++j) {
    cdf += resid[j];
    if (resid[j] > 0) last = j;
    if (cdf > threshold) pick = j;
  }
  *next = pick >= 0 ? pick : last;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> verify_sampling_cpu(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                                       const at::Tensor& draft_probs, const at::Tensor& target_logits,
                                                       double temperature, const at::Tensor& uniforms) {
  check_sampling_inputs(candidate, candidate_len, draft_probs, target_logits, temperature, uniforms);
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  at::Tensor accepted = at::empty({bsz}, candidate.options()), next = at::empty({bsz}, candidate.options());
  const at::Tensor c = candidate.contiguous(), len = candidate_len.contiguous(), lg = target_logits.contiguous();
  // draft_probs stays in its dtype ([B, S, V] is the largest input; only a few of its values are read);
  // the uniforms ([B, S+1]) are cheap to widen
  const at::Tensor q = draft_probs.contiguous(), u = uniforms.to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lg.scalar_type(), "verify_sampling_cpu", [&] {
    using logit_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "verify_sampling_cpu_q", [&] {
      using prob_t = scalar_t;
      const logit_t* lp = lg.data_ptr<logit_t>();
      const prob_t* qp = q.data_ptr<prob_t>();
      at::parallel_for(0, bsz, 1, [&](int64_t begin, int64_t end) {
        std::vector<double> resid(v);
        for (int64_t b = begin; b < end; ++b) {
          const int64_t* tok = c.data_ptr<int64_t>() + b * s;
          const int64_t l = len.data_ptr<int64_t>()[b];
          check_row(tok, l, s, v, b);
          sample_row(lp + b * (s + 1) * v, qp + b * s * v, u.data_ptr<double>() + b * (s + 1), tok, l, s, v,
                     temperature, b, resid, accepted.data_ptr<int64_t>() + b, next.data_ptr<int64_t>() + b);
        }
      });
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
