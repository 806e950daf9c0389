// The one place where the leanops op schemas are defined; kernels register per dispatch key.
#include <torch/library.h>

TORCH_LIBRARY(leanops, m) {
  // merge family (ToMe bipartite soft matching, TempMe, PYRA); see docs/DESIGN.md
  m.def("bipartite_match(Tensor metric, int r, int num_protected) -> (Tensor src_idx, Tensor dst_idx, Tensor unm_idx)");
  m.def(
      "merge_wavg(Tensor x, Tensor? size, Tensor src_idx, Tensor dst_idx, Tensor unm_idx, int num_protected, "
      "Tensor? channel_gate, Tensor? token_gate) -> (Tensor x_out, Tensor size_out)");
  m.def(
      "merge_wavg_backward(Tensor grad_out, Tensor x, Tensor? size, Tensor size_out, Tensor src_idx, "
      "Tensor dst_idx, Tensor unm_idx, int num_protected, Tensor? channel_gate, Tensor? token_gate) "
      "-> (Tensor grad_x, Tensor grad_channel_gate, Tensor grad_token_gate)");
  m.def("merge_slot_map(Tensor src_idx, Tensor dst_idx, Tensor unm_idx, int num_protected, int n) -> Tensor");
  m.def("unmerge(Tensor x_merged, Tensor slot_map) -> Tensor");
  m.def("unmerge_backward(Tensor grad, Tensor slot_map, int m) -> Tensor");

  // pool family (KFAtt, DIN); see docs/DESIGN.md
  m.def(
      "jagged_attention_pool(Tensor q, Tensor k, Tensor v, Tensor offsets, float scale, Tensor? bias, "
      "Tensor? freq_c, Tensor? prior_logit, Tensor? prior_value) -> (Tensor out, Tensor lse)");
  m.def(
      "jagged_attention_pool_backward(Tensor grad_out, Tensor? grad_lse, Tensor q, Tensor k, Tensor v, "
      "Tensor offsets, float scale, Tensor? bias, Tensor? freq_c, Tensor? prior_logit, Tensor? prior_value, "
      "Tensor out, Tensor lse) -> (Tensor dq, Tensor dk, Tensor dv, Tensor dbias, Tensor dfreq_c, "
      "Tensor dprior_logit, Tensor dprior_value)");

  // verify family (Minions); see docs/DESIGN.md
  m.def("majority_vote(Tensor drafts, Tensor draft_len, Tensor weights) -> (Tensor winner, Tensor candidate, "
        "Tensor candidate_len)");
  m.def("verify_greedy(Tensor candidate, Tensor candidate_len, Tensor target_logits) -> (Tensor accepted, "
        "Tensor next_token)");
  m.def("verify_greedy_ragged(Tensor candidates, Tensor offsets, Tensor target_logits) -> (Tensor accepted, "
        "Tensor next_token)");
  m.def("verify_sampling(Tensor candidate, Tensor candidate_len, Tensor draft_probs, Tensor target_logits, "
        "float temperature, Tensor uniforms) -> (Tensor accepted, Tensor next_token)");
}
