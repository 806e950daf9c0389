// Argument checks shared by the CPU and CUDA verify kernels: every message names the argument.
// Shapes, dtypes and devices are checked here for both; values (tokens, lengths, offsets, weights,
// probabilities, uniforms) only by the CPU kernel, on the host (the Python wrapper checks them for CUDA).
#pragma once
#include <ATen/ATen.h>

#include <cmath>

#include "common/checks.h"

namespace leanops::verify {

using common::check_same_device;

inline void check_long(const at::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.dim() == dims, name, " must be ", dims, "-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ", t.scalar_type());
}

inline void check_vote_inputs(const at::Tensor& drafts, const at::Tensor& draft_len, const at::Tensor& weights) {
  check_long(drafts, "drafts", 3);
  check_long(draft_len, "draft_len", 2);
  const int64_t b = drafts.size(0), k = drafts.size(1);
  TORCH_CHECK(k >= 1, "drafts must hold K >= 1 drafts per row");
  TORCH_CHECK(draft_len.size(0) == b && draft_len.size(1) == k, "draft_len must be [B, K] = [", b, ", ", k, "], got ",
              draft_len.sizes());
  check_float(weights, "weights");
  TORCH_CHECK((weights.dim() == 1 && weights.size(0) == k) ||
                  (weights.dim() == 2 && weights.size(0) == b && weights.size(1) == k),
              "weights must be [K] or [B, K] with K = ", k, ", got ", weights.sizes());
  check_same_device(draft_len, "draft_len", drafts, "drafts");
  check_same_device(weights, "weights", drafts, "drafts");
}

inline void check_verify_inputs(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                const at::Tensor& target_logits) {
  check_long(candidate, "candidate", 2);
  check_long(candidate_len, "candidate_len", 1);
  const int64_t b = candidate.size(0), s = candidate.size(1);
  TORCH_CHECK(candidate_len.size(0) == b, "candidate_len must be [B] = [", b, "], got ", candidate_len.sizes());
  TORCH_CHECK(target_logits.dim() == 3 && target_logits.size(0) == b && target_logits.size(1) == s + 1,
              "target_logits must be [B, S+1, V] = [", b, ", ", s + 1, ", V], got ", target_logits.sizes());
  TORCH_CHECK(target_logits.size(2) >= 1, "target_logits must have V >= 1");
  common::check_feature_dtype(target_logits, "target_logits");
  check_same_device(candidate_len, "candidate_len", candidate, "candidate");
  check_same_device(target_logits, "target_logits", candidate, "candidate");
}

// Ragged form: returns B. The offsets' values are checked on the host by the CPU kernel.
inline int64_t check_ragged_inputs(const at::Tensor& candidates, const at::Tensor& offsets,
                                   const at::Tensor& target_logits) {
  check_long(candidates, "candidates", 1);
  check_long(offsets, "offsets", 1);
  TORCH_CHECK(offsets.size(0) >= 1, "offsets must be [B+1] with B >= 0, got ", offsets.sizes());
  const int64_t bsz = offsets.size(0) - 1, t_total = candidates.size(0);
  TORCH_CHECK(target_logits.dim() == 2 && target_logits.size(0) == t_total + bsz,
              "target_logits must be [T + B, V] = [", t_total + bsz, ", V], got ", target_logits.sizes());
  common::check_feature_dtype(target_logits, "target_logits");
  TORCH_CHECK(target_logits.size(1) >= 1, "target_logits must have V >= 1");
  check_same_device(offsets, "offsets", candidates, "candidates");
  check_same_device(target_logits, "target_logits", candidates, "candidates");
  return bsz;
}

inline void check_sampling_inputs(const at::Tensor& candidate, const at::Tensor& candidate_len,
                                  const at::Tensor& draft_probs, const at::Tensor& target_logits, double temperature,
                                  const at::Tensor& uniforms) {
  check_verify_inputs(candidate, candidate_len, target_logits);
  const int64_t bsz = candidate.size(0), s = candidate.size(1), v = target_logits.size(2);
  TORCH_CHECK(draft_probs.dim() == 3 && draft_probs.size(0) == bsz && draft_probs.size(1) == s &&
                  draft_probs.size(2) == v,
              "draft_probs must be [B, S, V] = [", bsz, ", ", s, ", ", v, "], got ", draft_probs.sizes());
  common::check_feature_dtype(draft_probs, "draft_probs");
  TORCH_CHECK(uniforms.dim() == 2 && uniforms.size(0) == bsz && uniforms.size(1) == s + 1,
              "uniforms must be [B, S+1] = [", bsz, ", ", s + 1, "], got ", uniforms.sizes());
  check_float(uniforms, "uniforms");
  TORCH_CHECK(temperature > 0 && std::isfinite(temperature), "temperature must be > 0 and finite, got ", temperature);
  check_same_device(draft_probs, "draft_probs", candidate, "candidate");
  check_same_device(uniforms, "uniforms", candidate, "candidate");
}

// Per-row checks on the host: lengths in [0, S], candidate tokens in [0, V).
inline void check_row(const int64_t* tokens, int64_t len, int64_t s, int64_t v, int64_t row) {
  TORCH_CHECK(len >= 0 && len <= s, "candidate_len[", row, "] = ", len, " is outside [0, S=", s, "]");
  for (int64_t i = 0; i < len; ++i)
    TORCH_CHECK(tokens[i] >= 0 && tokens[i] < v, "candidate[", row, ", ", i, "] = ", tokens[i],
                " is outside the vocabulary [0, V=", v, ")");
}

// A draft probability the sampling kernel reads must be a probability.
inline void check_prob(double q, int64_t b, int64_t i, int64_t j) {
  TORCH_CHECK(q >= 0.0 && q <= 1.0, "draft_probs[", b, ", ", i, ", ", j, "] = ", q, " is not in [0, 1]");
}

// A uniform the sampling kernel reads must lie in [0, 1) (as torch.rand draws them).
inline void check_uniform(double u, int64_t b, int64_t i) {
  TORCH_CHECK(u >= 0.0 && u < 1.0, "uniforms[", b, ", ", i, "] = ", u, " is not in [0, 1)");
}

}  // namespace leanops::verify
