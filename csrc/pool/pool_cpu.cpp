// C++ CPU kernels of the pool family. Forward: one pass over each row's behaviours with an online softmax
// per head (running max, sum and value accumulator rescaled when the max grows), so nothing of size
// [B, max length] is allocated and k and v are each read once.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "pool_checks.h"
#include "pool_math.h"
#include "pool_ops.h"

namespace leanops::pool {
namespace {

template <typename acc_t>
inline acc_t softplus(acc_t x) {  // log(1 + e^x) without overflow; softplus(+inf) = +inf, softplus(-inf) = 0
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

template <typename acc_t>
inline acc_t sigmoid(acc_t x) {
  return x >= 0 ? acc_t(1) / (acc_t(1) + std::exp(-x)) : std::exp(x) / (acc_t(1) + std::exp(x));
}

template <typename scalar_t>
struct Inputs {
  const scalar_t *q, *k, *v, *bias, *freq, *prior_logit, *prior_value;
  const int64_t* off;
  double scale;
  PoolDims dims;

  using acc_t = at::opmath_type<scalar_t>;
  // Logit of behaviour t for row b, head h: before (raw) and after the frequency transform.
  inline void logit(int64_t b, int64_t h, int64_t t, acc_t& raw, acc_t& s) const {
    const scalar_t* qp = q + (b * dims.h + h) * dims.d;
    const scalar_t* kp = k + (t * dims.h + h) * dims.d;
    acc_t dot = 0;
    for (int64_t i = 0; i < dims.d; ++i) dot += acc_t(qp[i]) * acc_t(kp[i]);
    raw = acc_t(scale) * dot + (bias ? acc_t(bias[t * dims.h + h]) : acc_t(0));
    s = freq ? raw - softplus(raw + acc_t(freq[t * dims.h + h])) : raw;
  }
};

// Online softmax state of one (row, head): running max m, sum l of exp(s - m), a[dv] = sum exp(s - m) v.
// l == 0 means no unmasked entry yet; otherwise l >= 1 (the max's own weight is exp(0)) or NaN.
template <typename acc_t>
struct OnlineSoftmax {
  acc_t m = -std::numeric_limits<acc_t>::infinity(), l = 0;

  // Raises the running max to cover logits s[0], s[stride], ... (n of them); rescales l and a[dv] once.
  inline void raise_max(const acc_t* s, int64_t n, int64_t stride, acc_t* a, int64_t dv) {
    acc_t m_new = m;
    for (int64_t j = 0; j < n; ++j)
      if (!masked_logit(s[j * stride])) m_new = online_max(m_new, s[j * stride]);
    if (l != 0 && !(m_new == m)) {  // the max grew (or went NaN): rescale what was summed so far
      const acc_t alpha = std::exp(m - m_new);
      l *= alpha;
      for (int64_t i = 0; i < dv; ++i) a[i] *= alpha;
    }
    m = m_new;
  }

  // Adds an entry of logit s (s <= m, or NaN) and value v. A masked entry's value is not read.
  template <typename scalar_t>
  inline void add(acc_t s, const scalar_t* v, acc_t* a, int64_t dv) {
    if (masked_logit(s)) return;
    const acc_t p = std::exp(s - m);  // NaN for a +inf or NaN logit (then m is +inf or NaN)
    l += p;
    for (int64_t i = 0; i < dv; ++i) a[i] += p * acc_t(v[i]);
  }
};

// One pass over each row in blocks of kBlock behaviours: the block's logits for every head (each key row
// [H, D] is contiguous), then per head one rescale if the block raises the max, and the weighted sum of the
// block's values (still in cache). Scratch: kBlock x H logits.
constexpr int64_t kBlock = 16;

template <typename scalar_t, typename lse_t>
void forward_kernel(const Inputs<scalar_t>& in, scalar_t* out, lse_t* lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolDims d = in.dims;
  at::parallel_for(0, d.b, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(d.h * d.dv), logits(kBlock * d.h);
    std::vector<OnlineSoftmax<acc_t>> state(d.h);
    for (int64_t b = begin; b < end; ++b) {
      std::fill(acc.begin(), acc.end(), acc_t(0));
      std::fill(state.begin(), state.end(), OnlineSoftmax<acc_t>());
      if (in.prior_logit)  // the prior is one more entry of the softmax
        for (int64_t h = 0; h < d.h; ++h) {
          const acc_t s = acc_t(in.prior_logit[b * d.h + h]);
          state[h].raise_max(&s, 1, 1, acc.data() + h * d.dv, d.dv);
          state[h].add(s, in.prior_value + (b * d.h + h) * d.dv, acc.data() + h * d.dv, d.dv);
        }
      for (int64_t t0 = in.off[b]; t0 < in.off[b + 1]; t0 += kBlock) {
        const int64_t n = std::min(kBlock, in.off[b + 1] - t0);
        for (int64_t j = 0; j < n; ++j)
          for (int64_t h = 0; h < d.h; ++h) {
            acc_t raw;
            in.logit(b, h, t0 + j, raw, logits[j * d.h + h]);
          }
        for (int64_t h = 0; h < d.h; ++h) state[h].raise_max(logits.data() + h, n, d.h, acc.data() + h * d.dv, d.dv);
        for (int64_t j = 0; j < n; ++j)  // values in memory order: [t, h, :] is contiguous in t then h
          for (int64_t h = 0; h < d.h; ++h)
            state[h].add(logits[j * d.h + h], in.v + ((t0 + j) * d.h + h) * d.dv, acc.data() + h * d.dv, d.dv);
      }
      for (int64_t h = 0; h < d.h; ++h) {
        const acc_t l = state[h].l;
        scalar_t* op = out + (b * d.h + h) * d.dv;
        const acc_t* a = acc.data() + h * d.dv;
        if (l == 0) {  // empty: no entry, or every logit -inf
          std::fill(op, op + d.dv, scalar_t(0));
          lse[b * d.h + h] = -std::numeric_limits<lse_t>::infinity();
        } else {
          const acc_t inv = acc_t(1) / l;
          for (int64_t i = 0; i < d.dv; ++i) op[i] = scalar_t(a[i] * inv);
          lse[b * d.h + h] = lse_t(state[h].m + std::log(l));
        }
      }
    }
  });
}

// Per (row, head): recomputes each probability p = exp(s - lse). Every behaviour belongs to one row, so dk,
// dv, dbias and dfreq are written once, without atomics. A masked entry (s = -inf) has p = 0 and ds = 0 and
// its value is not read; dq and dk still take the products 0 * k and 0 * q, as autograd does.
template <typename scalar_t, typename lse_t>
void backward_kernel(const Inputs<scalar_t>& in, const scalar_t* gout, const lse_t* glse, const scalar_t* out,
                     const lse_t* lse, scalar_t* dq, scalar_t* dk, scalar_t* dv, scalar_t* dbias, scalar_t* dfreq,
                     scalar_t* dpl, scalar_t* dpv) {
  using acc_t = at::opmath_type<scalar_t>;
  const PoolDims d = in.dims;
  const acc_t scale = in.scale;
  at::parallel_for(0, d.b, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> dq_acc(d.d);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t h = 0; h < d.h; ++h) {
        const int64_t bh = b * d.h + h;
        const scalar_t* go = gout + bh * d.dv;
        const acc_t L = lse[bh], gl = glse ? acc_t(glse[bh]) : acc_t(0);
        acc_t delta = 0;  // dout . out
        for (int64_t i = 0; i < d.dv; ++i) delta += acc_t(go[i]) * acc_t(out[bh * d.dv + i]);
        std::fill(dq_acc.begin(), dq_acc.end(), acc_t(0));
        const scalar_t* qp = in.q + bh * d.d;
        for (int64_t t = in.off[b]; t < in.off[b + 1]; ++t) {
          acc_t raw, s;
          in.logit(b, h, t, raw, s);
          const bool masked = masked_logit(s);
          scalar_t* dvp = dv + (t * d.h + h) * d.dv;
          acc_t ds_after = 0;  // d loss / d s (after the frequency transform)
          if (masked) {
            std::fill(dvp, dvp + d.dv, scalar_t(0));
          } else {
            const acc_t p = std::exp(s - L);
            const scalar_t* vp = in.v + (t * d.h + h) * d.dv;
            acc_t gv = 0;
            for (int64_t i = 0; i < d.dv; ++i) {
              gv += acc_t(go[i]) * acc_t(vp[i]);
              dvp[i] = scalar_t(p * acc_t(go[i]));
            }
            ds_after = p * (gv - delta) + p * gl;
          }
          acc_t ds = ds_after;
          if (in.freq) {
            const acc_t sg = sigmoid(raw + acc_t(in.freq[t * d.h + h]));
            ds = ds_after * (acc_t(1) - sg);
            dfreq[t * d.h + h] = scalar_t(-ds_after * sg);
          }
          if (dbias) dbias[t * d.h + h] = scalar_t(ds);
          const scalar_t* kp = in.k + (t * d.h + h) * d.d;
          scalar_t* dkp = dk + (t * d.h + h) * d.d;
          for (int64_t i = 0; i < d.d; ++i) {
            dq_acc[i] += scale * ds * acc_t(kp[i]);
            dkp[i] = scalar_t(scale * ds * acc_t(qp[i]));
          }
        }
        for (int64_t i = 0; i < d.d; ++i) dq[bh * d.d + i] = scalar_t(dq_acc[i]);
        if (in.prior_logit) {
          const acc_t pl = acc_t(in.prior_logit[bh]);
          if (masked_logit(pl)) {  // a masked prior's value is not read
            for (int64_t i = 0; i < d.dv; ++i) dpv[bh * d.dv + i] = scalar_t(0);
            dpl[bh] = scalar_t(0);
          } else {
            const acc_t p0 = std::exp(pl - L);
            acc_t gv = 0;
            for (int64_t i = 0; i < d.dv; ++i) {
              gv += acc_t(go[i]) * acc_t(in.prior_value[bh * d.dv + i]);
              dpv[bh * d.dv + i] = scalar_t(p0 * acc_t(go[i]));
            }
            dpl[bh] = scalar_t(p0 * (gv - delta) + p0 * gl);
          }
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> jagged_attention_pool_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& offsets, double scale,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& freq_c,
    const c10::optional<at::Tensor>& prior_logit, const c10::optional<at::Tensor>& prior_value) {
  const PoolDims dims = check_pool_inputs(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value);
  const at::Tensor off = offsets.contiguous();
  check_offsets_values(off.data_ptr<int64_t>(), dims.b, dims.t);
  at::Tensor out = at::empty({dims.b, dims.h, dims.dv}, q.options());
  at::Tensor lse = at::empty({dims.b, dims.h}, q.options().dtype(lse_dtype(q)));
  if (dims.b == 0 || dims.h == 0) return {out, lse};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_cpu", [&] {
    Inputs<scalar_t> in{qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                        opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf), opt_ptr<scalar_t>(prior_logit, hpl),
                        opt_ptr<scalar_t>(prior_value, hpv), off.data_ptr<int64_t>(), scale, dims};
    if (lse.scalar_type() == at::kDouble)
      forward_kernel<scalar_t, double>(in, out.data_ptr<scalar_t>(), lse.data_ptr<double>());
    else
      forward_kernel<scalar_t, float>(in, out.data_ptr<scalar_t>(), lse.data_ptr<float>());
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
jagged_attention_pool_backward_cpu(const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_lse,
                                   const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& offsets, double scale, const c10::optional<at::Tensor>& bias,
                                   const c10::optional<at::Tensor>& freq_c,
                                   const c10::optional<at::Tensor>& prior_logit,
                                   const c10::optional<at::Tensor>& prior_value, const at::Tensor& out,
                                   const at::Tensor& lse) {
  const PoolDims dims = check_pool_backward_inputs(grad_out, grad_lse, q, k, v, offsets, scale, bias, freq_c,
                                                   prior_logit, prior_value, out, lse);
  const at::Tensor off = offsets.contiguous();
  check_offsets_values(off.data_ptr<int64_t>(), dims.b, dims.t);
  auto empty = [&] { return at::empty({0}, q.options()); };  // a fresh one each: outputs must not alias
  at::Tensor dq = at::empty({dims.b, dims.h, dims.d}, q.options());
  at::Tensor dk = at::empty({dims.t, dims.h, dims.d}, q.options());
  at::Tensor dv = at::empty({dims.t, dims.h, dims.dv}, q.options());
  at::Tensor dbias = bias ? at::empty({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dfreq = freq_c ? at::empty({dims.t, dims.h}, q.options()) : empty();
  at::Tensor dpl = prior_logit ? at::empty({dims.b, dims.h}, q.options()) : empty();
  at::Tensor dpv = prior_value ? at::empty({dims.b, dims.h, dims.dv}, q.options()) : empty();
  // with B == 0 or H == 0 there is no behaviour either (T == offsets[B] == 0, or H == 0): all empty
  if (dims.b == 0 || dims.h == 0) return {dq, dk.zero_(), dv.zero_(), dbias.zero_(), dfreq.zero_(), dpl, dpv};
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const at::Tensor go = grad_out.to(q.scalar_type()).contiguous(), oc = out.to(q.scalar_type()).contiguous();
  const at::Tensor lc = lse.to(lse_dtype(q)).contiguous();
  const at::Tensor glc = grad_lse ? grad_lse->to(lse_dtype(q)).contiguous() : at::Tensor();
  at::Tensor hb, hf, hpl, hpv;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "jagged_attention_pool_backward_cpu", [&] {
    Inputs<scalar_t> in{qc.data_ptr<scalar_t>(), kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(),
                        opt_ptr<scalar_t>(bias, hb), opt_ptr<scalar_t>(freq_c, hf), opt_ptr<scalar_t>(prior_logit, hpl),
                        opt_ptr<scalar_t>(prior_value, hpv), off.data_ptr<int64_t>(), scale, dims};
    auto run = [&](auto* lse_ptr, auto* glse_ptr) {
      backward_kernel(in, go.data_ptr<scalar_t>(), glse_ptr, oc.data_ptr<scalar_t>(), lse_ptr,
                      dq.data_ptr<scalar_t>(), dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(),
                      bias ? dbias.data_ptr<scalar_t>() : nullptr, freq_c ? dfreq.data_ptr<scalar_t>() : nullptr,
                      prior_logit ? dpl.data_ptr<scalar_t>() : nullptr, prior_value ? dpv.data_ptr<scalar_t>() : nullptr);
    };
    if (lc.scalar_type() == at::kDouble)
      run(lc.data_ptr<double>(), glc.defined() ? glc.data_ptr<double>() : static_cast<const double*>(nullptr));
    else
      run(lc.data_ptr<float>(), glc.defined() ? glc.data_ptr<float>() : static_cast<const float*>(nullptr));
  });
  return {dq, dk, dv, dbias, dfreq, dpl, dpv};
}

TORCH_LIBRARY_IMPL(leanops, CPU, lib) {
  lib.impl("jagged_attention_pool", &jagged_attention_pool_cpu);
  lib.impl("jagged_attention_pool_backward", &jagged_attention_pool_backward_cpu);
}

}  // namespace leanops::pool
