// The economy step fused into one pass per env, for CPU (rbc_ray/economy/fused.py loads it).
//
// Same maths and order of events as step.py (docs/model.md); the torch step
// stays the definition and the GPU path, and the tests hold this kernel to the per-agent reference
// loop. Why it exists: on a 2-core CPU the torch step is ~100 small ops whose dispatch and memory
// passes cost more than the arithmetic; here every env is one cache-resident pass, envs run in
// parallel on torch's intra-op threads, and the [F, N] utility loop vectorises (AVX2 when built so).
// In float32 with AVX2 the consumers' [N, F + 2] action block is turned firm-major in registers
// (uint8 with at most 16 heads: byte transposes; otherwise 8x8 transposes of int32) and its grids
// looked up there (an index-by-index loop was about a quarter of the step). Indices may be uint8,
// int32 or int64; uint8 moves an eighth of the bytes. The hot loops read locals, not the members
// of the shared `Step` (see there). The consumers' observation rows are built 8 consumers (whole
// vectors) at a time by permutes, and the firms' production in vectorised double log2/exp2
// (float32 only).
//
// Layout of this file:
//   names      the tables of inputs, outputs, scalars and flags (enum + names; fused.py checks its
//              own names against INPUTS / OUTPUTS / SCALARS / FLAGS at load)
//   maths      x^k for the utility, in scalar code and AVX2; log2/exp2 in double for production
//   registers  AVX2 grid lookups and transposes for reading the consumers' actions
//   Step       one call: sizes, config, input and output pointers; Scratch: one thread's buffers
//   events     one function per event of the spec's order of events, called by step_env per env:
//     1  scale_demand_to_budget  (reads the consumers' actions: read_actions_bytes / _int32 / _any)
//     2  sum_demand_and_hours
//     3  ration_goods            (also the next state's overdemanded flags)
//     4  consume
//     5  export_goods
//     6  run_firms               (also the next price, wage and stock)
//     7  advance_time            (also done)
//     8  redistribute_taxes      (government_reward: the welfare, from the sums of 4 and 6)
//     9  set_taxes
//     10 update_budgets          (also the next log TFP)
//     -  observe                 the next state's observations (observe.py)
//   step       the Python entry point: checks and converts the inputs, allocates the outputs, runs
//              step_env over the envs in parallel
#include <torch/extension.h>
#include <ATen/Parallel.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// Names. Each table is one X-macro: the enum indexes the lists that step() takes and returns, and
// the same names are exported to Python (fused.py builds its lists and reads the outputs by them).

// Input tensors: the state, the economy's parameters, the actions (grid indices) and the TFP noise
// (an empty tensor when there is none).
#define RBC_INPUTS(X)                                                                              \
  X(kPrice, "state.price") X(kWage, "state.wage") X(kStock, "state.stock")                          \
  X(kCapital, "state.capital") X(kFirmBudget, "state.firm_budget")                                \
  X(kConsumerBudget, "state.consumer_budget") X(kIncomeTax, "state.income_tax")                   \
  X(kCorporateTax, "state.corporate_tax") X(kTime, "state.t") X(kLogTfp, "state.log_tfp")         \
  X(kThetaFactor, "state.theta_factor") X(kTheta, "params.theta") X(kAlpha, "params.alpha")       \
  X(kDemandGrid, "params.demand_grid") X(kHoursGrid, "params.hours_grid")                         \
  X(kPriceGrid, "params.price_grid") X(kWageGrid, "params.wage_grid")                             \
  X(kTaxGrid, "params.tax_grid") X(kDigitScale, "params.digit_scale")                             \
  X(kConsumerActions, "actions.consumer") X(kFirmActions, "actions.firm")                         \
  X(kGovernmentActions, "actions.government") X(kTfpNoise, "tfp_noise")
// Output tensors, named by the record and field that fused.py puts them in.
#define RBC_OUTPUTS(X)                                                                             \
  X(kNextPrice, "state.price") X(kNextWage, "state.wage") X(kNextStock, "state.stock")              \
  X(kNextOverdemanded, "state.overdemanded") X(kNextCapital, "state.capital")                      \
  X(kNextFirmBudget, "state.firm_budget") X(kNextConsumerBudget, "state.consumer_budget")          \
  X(kNextIncomeTax, "state.income_tax") X(kNextCorporateTax, "state.corporate_tax")                \
  X(kNextTime, "state.t") X(kNextLogTfp, "state.log_tfp")                                          \
  X(kConsumed, "accounts.consumed") X(kSpending, "accounts.consumer_spending")                     \
  X(kLabourIncome, "accounts.labour_income") X(kHours, "accounts.hours")                           \
  X(kSold, "accounts.units_sold") X(kExported, "accounts.exported") X(kProduced, "accounts.produced") \
  X(kLabour, "accounts.labour") X(kRevenue, "accounts.firm_revenue") X(kWageBill, "accounts.wage_bill") \
  X(kInvestment, "accounts.investment") X(kProfit, "accounts.profit")                              \
  X(kIncomeTaxTotal, "accounts.income_tax") X(kCorporateTaxTotal, "accounts.corporate_tax")        \
  X(kTaxes, "accounts.taxes") X(kLumpSum, "accounts.lump_sum")                                     \
  X(kConsumerReward, "rewards.consumer") X(kFirmReward, "rewards.firm")                            \
  X(kWelfare, "rewards.government") X(kDone, "done")                                               \
  X(kObsGlobal, "obs.global_") X(kObsConsumer, "obs.consumer") X(kObsFirm, "obs.firm")
// Scalars of the config, named by their EconomyConfig field.
#define RBC_SCALARS(X)                                                                             \
  X(kEta, "eta") X(kPExport, "p_export") X(kQExport, "q_export")                                  \
  X(kInvestmentFraction, "investment_fraction") X(kFirmWelfareWeight, "firm_welfare_weight")      \
  X(kBudgetEpsilon, "budget_epsilon") X(kInterestRate, "interest_rate")                           \
  X(kDepreciation, "depreciation") X(kProductivity, "productivity") X(kTfpRho, "tfp_rho")         \
  X(kTfpSigma, "tfp_sigma") X(kNConsumers, "n_consumers") X(kEpisodeLength, "episode_length")     \
  X(kPriceScale, "price_scale") X(kWageScale, "wage_scale") X(kThetaScale, "theta_scale")         \
  X(kCapitalScale, "capital_scale")
// Switches of the config (fused.py says how each follows from EconomyConfig).
#define RBC_FLAGS(X)                                                                               \
  X(kOpen, "open_economy") X(kExportStrict, "export_strict") X(kInvestIncome, "investment_from_income") \
  X(kLabourQuadratic, "quadratic_labour") X(kWelfareTotal, "total_welfare")                        \
  X(kDigits, "digit_encoding") X(kTfpOn, "tfp_shock")

#define RBC_ENUM_ENTRY(id, name) id,
#define RBC_NAME_ENTRY(id, name) name,
enum Input { RBC_INPUTS(RBC_ENUM_ENTRY) kNumInputs };
enum Output { RBC_OUTPUTS(RBC_ENUM_ENTRY) kNumOutputs };
enum Scalar { RBC_SCALARS(RBC_ENUM_ENTRY) kNumScalars };
enum Flag { RBC_FLAGS(RBC_ENUM_ENTRY) kNumFlags };
const std::vector<std::string> kInputNames = {RBC_INPUTS(RBC_NAME_ENTRY)};
const std::vector<std::string> kOutputNames = {RBC_OUTPUTS(RBC_NAME_ENTRY)};
const std::vector<std::string> kScalarNames = {RBC_SCALARS(RBC_NAME_ENTRY)};
const std::vector<std::string> kFlagNames = {RBC_FLAGS(RBC_NAME_ENTRY)};
#undef RBC_ENUM_ENTRY
#undef RBC_NAME_ENTRY

// ---------------------------------------------------------------------------------------------
// Maths and registers.


// Branch-free float x^k for x >= 1 (here x = c + 1). x^k = x^m 2^(f log2 x) with m = k rounded
// (0 or 1) and |f| <= 1/2: the exp2 argument stays within +-64 (no clamping) and log2's error is
// scaled down by |f| (0.1 at the default eta). log: x = 2^e m', ln m' = 2 atanh(u),
// u = (m'-1)/(m'+1), |u| <= 0.172, odd polynomial; exp2: round to nearest by adding 1.5 2^23 (its
// bits minus those of 1.5 2^23 are the integer), degree-5 polynomial on [-1/2, 1/2] (Estrin), the
// integer added to the exponent bits. About 2e-7 relative; x = 1 gives exactly 1. Other k (m not 0
// or 1) and float64 use the C library.
constexpr float kRoundMagic = 12582912.0f;  // 1.5 2^23: t + this rounds t to an integer
constexpr int32_t kRoundMagicBits = 0x4b400000;
inline float bits_to_float(int32_t i) { return __builtin_bit_cast(float, i); }
inline int32_t float_to_bits(float x) { return __builtin_bit_cast(int32_t, x); }
// How x^k splits: polynomial (k in [-1/2, 3/2)) with m = 1 (times_x) or 0, f = k - m.
struct PowSplit {
  bool polynomial, times_x;
  float f, f_log2e;
  explicit PowSplit(float k)
      : polynomial(k >= -0.5f && k < 1.5f), times_x(k >= 0.5f), f(times_x ? k - 1.0f : k),
        f_log2e(f * 1.44269504088896341f) {}
};
inline float fast_pow_split(float x, float f, float f_log2e, bool times_x) {
  const int32_t ix = float_to_bits(x);
  const int32_t ei = (ix - 0x3f3504f3) >> 23;  // x = 2^ei m' with m' in [sqrt(1/2), sqrt(2))
  const float mp = bits_to_float(ix - (ei << 23));
  const float u = (mp - 1.0f) / (mp + 1.0f), u2 = u * u;
  const float ln_m = u * ((4.1296188281e-1f * u2 + 6.6652229130e-1f) * u2 + 2.0000002372f);
  const float t = f * static_cast<float>(ei) + f_log2e * ln_m;  // f log2 x
  const float big = t + kRoundMagic;
  const float g = t - (big - kRoundMagic), g2 = g * g;  // g in [-1/2, 1/2]
  const float p = (6.9314685594e-1f * g + 1.0f) +
                  g2 * ((5.5508929525e-2f * g + 2.4022238003e-1f) + g2 * (1.3218672482e-3f * g + 9.6716979384e-3f));
  const int32_t n = float_to_bits(big) - kRoundMagicBits;
  const float r = bits_to_float(float_to_bits(p) + (n << 23));  // p 2^n
  return times_x ? r * x : r;
}
#if defined(__AVX2__) && defined(__FMA__)
// The same arithmetic on 8 x kChains floats at once, written chain by chain so that the chains'
// independent instructions interleave: one chain alone is latency-bound (on this project's Zen 1
// cores, 4 chains made the step about 11% faster than the compiler's one-vector loop, 2 chains 5%).
constexpr int kChains = 4, kBlock = 8 * kChains;
// The firm-row pass interleaves 6: on a Zen 3 machine that was about 3% faster than 4
// in the whole step (8 run out of registers and were slower).
constexpr int kRowChains = 6;
// r[k] = (c[k] + 1)^(f or f + 1) for C vectors, in registers. Same method as fast_pow_split, two
// instructions shorter per vector: f log2(e) is folded into the log's coefficients, and t is split
// by a rounding instruction instead of the 1.5 2^23 trick (together about 15% faster, same accuracy).
template <int C>
inline void pow_chains(const __m256 (&c)[C], float f, float f_log2e, bool times_x, __m256 (&r)[C]) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 vf = _mm256_set1_ps(f);
  const __m256 k2 = _mm256_set1_ps(4.1296188281e-1f * f_log2e), k1 = _mm256_set1_ps(6.6652229130e-1f * f_log2e),
               k0 = _mm256_set1_ps(2.0000002372f * f_log2e);
  __m256 x[C], u[C], t[C], rt[C], g[C], p[C];
  __m256i ei[C];
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) x[k] = _mm256_add_ps(c[k], one);
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) {
    const __m256i ix = _mm256_castps_si256(x[k]);
    ei[k] = _mm256_srai_epi32(_mm256_sub_epi32(ix, _mm256_set1_epi32(0x3f3504f3)), 23);
    const __m256 mp = _mm256_castsi256_ps(_mm256_sub_epi32(ix, _mm256_slli_epi32(ei[k], 23)));
    u[k] = _mm256_div_ps(_mm256_sub_ps(mp, one), _mm256_add_ps(mp, one));
  }
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) {
    const __m256 u2 = _mm256_mul_ps(u[k], u[k]);
    __m256 q = _mm256_fmadd_ps(k2, u2, k1);
    q = _mm256_fmadd_ps(q, u2, k0);
    t[k] = _mm256_fmadd_ps(u[k], q, _mm256_mul_ps(vf, _mm256_cvtepi32_ps(ei[k])));
  }
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) {
    rt[k] = _mm256_round_ps(t[k], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    g[k] = _mm256_sub_ps(t[k], rt[k]);
  }
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) {
    const __m256 g2 = _mm256_mul_ps(g[k], g[k]);
    const __m256 lo = _mm256_fmadd_ps(_mm256_set1_ps(6.9314685594e-1f), g[k], one);
    const __m256 mid = _mm256_fmadd_ps(_mm256_set1_ps(5.5508929525e-2f), g[k], _mm256_set1_ps(2.4022238003e-1f));
    const __m256 hi = _mm256_fmadd_ps(_mm256_set1_ps(1.3218672482e-3f), g[k], _mm256_set1_ps(9.6716979384e-3f));
    p[k] = _mm256_fmadd_ps(g2, _mm256_fmadd_ps(g2, hi, mid), lo);
  }
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) {
    const __m256i n = _mm256_cvtps_epi32(rt[k]);
    r[k] = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p[k]), _mm256_slli_epi32(n, 23)));
    if (times_x) r[k] = _mm256_mul_ps(r[k], x[k]);
  }
}
inline void pow_block(const float* __restrict c, float f, float f_log2e, bool times_x, float* __restrict out) {
  __m256 x[kChains], r[kChains];
  for (int k = 0; k < kChains; ++k) x[k] = _mm256_loadu_ps(c + 8 * k);
  pow_chains<kChains>(x, f, f_log2e, times_x, r);
  for (int k = 0; k < kChains; ++k) _mm256_storeu_ps(out + 8 * k, r[k]);
}
#else
constexpr int kBlock = 0;  // no AVX2: the scalar loop below, vectorised by the compiler
inline void pow_block(const float*, float, float, bool, float*) {}
#endif
// out = (c + 1)^k.
inline void power_all(const float* __restrict c, float k, float* __restrict out, int64_t n) {
  const PowSplit split(k);
  if (split.polynomial) {
    const bool times_x = split.times_x;
    const float f = split.f, f_log2e = split.f_log2e;
    int64_t j = 0;
    for (; kBlock > 0 && j + kBlock <= n; j += kBlock) pow_block(c + j, f, f_log2e, times_x, out + j);
#pragma omp simd
    for (int64_t i = j; i < n; ++i) out[i] = fast_pow_split(c[i] + 1.0f, f, f_log2e, times_x);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = std::pow(c[j] + 1.0f, k);
  }
}
inline void power_all(const double* c, double k, double* out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::exp(k * std::log(c[j] + 1.0));
}

#if defined(__AVX2__) && defined(__FMA__)
// grid[idx] for a grid of at most 16 values held in two registers (lo = values 0-7, hi = 8-15).
inline __m256 lookup16(__m256 lo, __m256 hi, __m256i idx) {
  const __m256 from_lo = _mm256_permutevar8x32_ps(lo, idx), from_hi = _mm256_permutevar8x32_ps(hi, idx);
  return _mm256_blendv_ps(from_lo, from_hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7))));
}
// 8x8 transpose of r (rows in, columns out).
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
// The 16 columns of an 8 x 16 byte block (rows r): column c is the low (c even) or high (c odd)
// 8 bytes of o[c / 2], in row order. Three rounds of unpacks.
inline void transpose_bytes(const __m128i (&r)[8], __m128i (&o)[8]) {
  const __m128i a0 = _mm_unpacklo_epi8(r[0], r[1]), a1 = _mm_unpackhi_epi8(r[0], r[1]);
  const __m128i a2 = _mm_unpacklo_epi8(r[2], r[3]), a3 = _mm_unpackhi_epi8(r[2], r[3]);
  const __m128i a4 = _mm_unpacklo_epi8(r[4], r[5]), a5 = _mm_unpackhi_epi8(r[4], r[5]);
  const __m128i a6 = _mm_unpacklo_epi8(r[6], r[7]), a7 = _mm_unpackhi_epi8(r[6], r[7]);
  const __m128i b0 = _mm_unpacklo_epi16(a0, a2), b1 = _mm_unpackhi_epi16(a0, a2);  // rows 0-3: columns 0-3, 4-7
  const __m128i b2 = _mm_unpacklo_epi16(a1, a3), b3 = _mm_unpackhi_epi16(a1, a3);  // rows 0-3: columns 8-11, 12-15
  const __m128i b4 = _mm_unpacklo_epi16(a4, a6), b5 = _mm_unpackhi_epi16(a4, a6);  // rows 4-7: columns 0-3, 4-7
  const __m128i b6 = _mm_unpacklo_epi16(a5, a7), b7 = _mm_unpackhi_epi16(a5, a7);  // rows 4-7: columns 8-11, 12-15
  o[0] = _mm_unpacklo_epi32(b0, b4);
  o[1] = _mm_unpackhi_epi32(b0, b4);
  o[2] = _mm_unpacklo_epi32(b1, b5);
  o[3] = _mm_unpackhi_epi32(b1, b5);
  o[4] = _mm_unpacklo_epi32(b2, b6);
  o[5] = _mm_unpackhi_epi32(b2, b6);
  o[6] = _mm_unpacklo_epi32(b3, b7);
  o[7] = _mm_unpackhi_epi32(b3, b7);
}
// One chunk of C vectors of a firm's row of the [F, NP] consumption scratch: c = row x ration,
// stored to the output row (its first n floats: the padding stays out), spending += c x price,
// usum += (c + 1)^k (pow_chains).
template <int C>
inline void receive_chunk(const float* row, float* out, int64_t n, __m256 r, __m256 pi, float f, float f_log2e,
                          bool times_x, float* sp, float* usum) {
  __m256 c[C], pw[C];
  for (int k = 0; k < C; ++k) {
    c[k] = _mm256_mul_ps(_mm256_loadu_ps(row + 8 * k), r);
    _mm256_storeu_ps(sp + 8 * k, _mm256_add_ps(_mm256_loadu_ps(sp + 8 * k), _mm256_mul_ps(c[k], pi)));
    if (8 * k + 8 <= n) {
      _mm256_storeu_ps(out + 8 * k, c[k]);
    } else if (8 * k < n) {
      alignas(32) float tail[8];
      _mm256_store_ps(tail, c[k]);
      for (int64_t q = 8 * k; q < n; ++q) out[q] = tail[q - 8 * k];
    }
  }
  pow_chains<C>(c, f, f_log2e, times_x, pw);
  for (int k = 0; k < C; ++k) _mm256_storeu_ps(usum + 8 * k, _mm256_add_ps(_mm256_loadu_ps(usum + 8 * k), pw[k]));
}
// A firm's whole row: chunks of C vectors, then single vectors (np is a multiple of 8).
template <int C>
inline void receive_row(const float* row, float* out, int64_t n, int64_t np, float ration, float price, float f,
                        float f_log2e, bool times_x, float* sp, float* usum) {
  const __m256 r = _mm256_set1_ps(ration), pi = _mm256_set1_ps(price);
  int64_t j = 0;
  for (; j + 8 * C <= np; j += 8 * C) receive_chunk<C>(row + j, out + j, n - j, r, pi, f, f_log2e, times_x, sp + j, usum + j);
  for (; j < np; j += 8) receive_chunk<1>(row + j, out + j, n - j, r, pi, f, f_log2e, times_x, sp + j, usum + j);
}
// A grid of up to 16 values in two registers, for lookup16.
struct Grid16 {
  __m256 lo, hi;
  template <typename T>
  Grid16(const T* g, int64_t n) {
    alignas(32) float v[16] = {0};
    for (int64_t k = 0; k < n && k < 16; ++k) v[k] = static_cast<float>(g[k]);
    lo = _mm256_load_ps(v);
    hi = _mm256_load_ps(v + 8);
  }
};
#endif

// log2 and exp2 in double for the float32 firms' production: branch-free, so the firms' loop
// vectorises. log2: x = 2^e m' with m' in [sqrt(1/2), sqrt(2)), ln m' = 2 atanh(u),
// u = (m'-1)/(m'+1), |u| <= 0.172, to u^9 (about 1e-9 absolute for normal x > 0); exp2: round to
// nearest by adding 1.5 2^52, degree-7 Taylor polynomial on [-1/2, 1/2] (about 7e-9 relative). Both
// far below float32's rounding of the result.
inline double log2_normal(double x) {
  const int64_t ix = __builtin_bit_cast(int64_t, x);
  // exponent of x / sqrt(1/2), biased by 1024 so the shift is logical (AVX2 has no 64-bit
  // arithmetic shift); the double of it by the 2^52 magic (nor an int64 -> double conversion)
  const uint64_t biased = static_cast<uint64_t>(ix - 0x3fe6a09e667f3bcdLL + (1024LL << 52)) >> 52;
  const double e = __builtin_bit_cast(double, biased | 0x4330000000000000ULL) - (4503599627370496.0 + 1024.0);
  const int64_t shift = (static_cast<int64_t>(biased) - 1024) << 52;
  const double m = __builtin_bit_cast(double, ix - shift);
  const double u = (m - 1.0) / (m + 1.0), u2 = u * u;
  const double s = 1.0 + u2 * (1.0 / 3 + u2 * (1.0 / 5 + u2 * (1.0 / 7 + u2 * (1.0 / 9))));
  return e + (2.0 * 1.4426950408889634) * u * s;
}
inline double exp2_moderate(double y) {  // |y| < 1000 (the 2^n stays a normal double)
  const double magic = 6755399441055744.0;  // 1.5 2^52
  const double big = y + magic;
  const double g = y - (big - magic);
  const int64_t n = __builtin_bit_cast(int64_t, big) - __builtin_bit_cast(int64_t, magic);
  constexpr double l = 0.6931471805599453;
  double p = l / 7;
  p = 1.0 + g * p;  // Horner on the Taylor series of exp(g l), innermost first
  p = 1.0 + g * (l / 6) * p;
  p = 1.0 + g * (l / 5) * p;
  p = 1.0 + g * (l / 4) * p;
  p = 1.0 + g * (l / 3) * p;
  p = 1.0 + g * (l / 2) * p;
  p = 1.0 + g * l * p;
  return __builtin_bit_cast(double, __builtin_bit_cast(int64_t, p) + (n << 52));
}

// ---------------------------------------------------------------------------------------------
// One call of the step and one thread's buffers.

// One call: sizes, config, and the inputs' and outputs' data, shared read-only by the threads.
// The event functions copy the members they use into locals first: after every vector store (a
// may_alias type) the compiler reloads whatever it reads through a reference, pointer and all (in
// the consumer observation's loop that was most of its cost).
template <typename T, typename I>
struct Step {
  int64_t E, F, N;   // envs, firms, consumers
  int64_t D, DB;     // digits of the encoding; width of an encoded budget or stock (D, or 1 without)
  int64_t G, DC, DF; // global observation; consumer and firm own parts
  int64_t A;         // consumer action heads: F demands, hours, employer
  int64_t NP;        // the scratch rows' stride: N rounded up to whole 8-float vectors
  // inputs
  const T *price, *wage, *stock, *capital, *firm_budget, *budget, *income_tax, *corporate_tax, *t, *log_tfp,
      *theta_factor, *theta, *alpha, *demand_grid, *hours_grid, *price_grid, *wage_grid, *tax_grid, *digit_scale;
  const T* noise;  // nullptr without a TFP shock
  const I *act_c, *act_f, *act_g;
  int64_t n_demand, n_hours, n_price, n_wage, n_tax;
  // config
  T one_minus_eta, p_export, q_export, inv_frac, fww, eps, growth, keep, productivity, tfp_rho, tfp_sigma,
      n_consumers, episode_length, price_scale, wage_scale, theta_scale, capital_scale;
  bool open, export_strict, invest_income, quadratic, welfare_total, digits, tfp_on, interest, depreciates;
  // outputs
  T *o_price, *o_wage, *o_stock, *o_over, *o_capital, *o_fb, *o_cb, *o_itax, *o_ctax, *o_t, *o_tfp;
  T *consumed, *spending, *labour_income, *hours, *sold, *exported, *produced, *labour, *revenue, *wage_bill,
      *investment, *profit, *itax_total, *ctax_total, *taxes, *lump, *c_reward, *f_reward, *welfare;
  bool* done;
  T *obs_g, *obs_c, *obs_f;
  // how the consumers' actions are read: the AVX2 readers look the grids up in registers (up to 16
  // values each); uint8 indices with at most 16 heads are read as bytes and checked head by head,
  // the rest against lim32 (the largest allowed index of each head, per consumer)
  bool fast_lookup, byte_ingest;
  std::vector<int32_t> lim32;
  // the consumer observation's permute patterns (8 consumers = DC vectors): who, digit scale, theta lane
  std::vector<int32_t> obs_who;
  std::vector<float> obs_scale, obs_theta;
  // the utility's power in registers when power_all would take its polynomial path
  PowSplit pow_split;

  // Reads the inputs (checked and converted by step()) and allocates the outputs into out.
  Step(const std::vector<at::Tensor>& in, const std::vector<double>& sc, const std::vector<int64_t>& fl,
       std::vector<at::Tensor>& out)
      : pow_split(static_cast<float>(1.0 - sc[kEta])) {
    E = in[kPrice].size(0), F = in[kPrice].size(1), N = in[kConsumerBudget].size(1);
    D = in[kDigitScale].size(0);
    digits = fl[kDigits] != 0;
    DB = digits ? D : 1;
    G = 3 * F + F * DB + 3;
    DC = DB + 1;
    DF = DB + 2 + F;
    A = F + 2;
    NP = (N + 7) / 8 * 8;

    price = in[kPrice].data_ptr<T>();
    wage = in[kWage].data_ptr<T>();
    stock = in[kStock].data_ptr<T>();
    capital = in[kCapital].data_ptr<T>();
    firm_budget = in[kFirmBudget].data_ptr<T>();
    budget = in[kConsumerBudget].data_ptr<T>();
    income_tax = in[kIncomeTax].data_ptr<T>();
    corporate_tax = in[kCorporateTax].data_ptr<T>();
    t = in[kTime].data_ptr<T>();
    log_tfp = in[kLogTfp].data_ptr<T>();
    theta_factor = in[kThetaFactor].data_ptr<T>();
    theta = in[kTheta].data_ptr<T>();
    alpha = in[kAlpha].data_ptr<T>();
    demand_grid = in[kDemandGrid].data_ptr<T>();
    hours_grid = in[kHoursGrid].data_ptr<T>();
    price_grid = in[kPriceGrid].data_ptr<T>();
    wage_grid = in[kWageGrid].data_ptr<T>();
    tax_grid = in[kTaxGrid].data_ptr<T>();
    digit_scale = in[kDigitScale].data_ptr<T>();
    noise = in[kTfpNoise].numel() == E ? in[kTfpNoise].data_ptr<T>() : nullptr;
    act_c = in[kConsumerActions].data_ptr<I>();
    act_f = in[kFirmActions].data_ptr<I>();
    act_g = in[kGovernmentActions].data_ptr<I>();
    n_demand = in[kDemandGrid].size(0), n_hours = in[kHoursGrid].size(0), n_price = in[kPriceGrid].size(0);
    n_wage = in[kWageGrid].size(0), n_tax = in[kTaxGrid].size(0);

    one_minus_eta = static_cast<T>(1.0 - sc[kEta]);
    p_export = static_cast<T>(sc[kPExport]), q_export = static_cast<T>(sc[kQExport]);
    inv_frac = static_cast<T>(sc[kInvestmentFraction]);
    fww = static_cast<T>(sc[kFirmWelfareWeight]);
    eps = static_cast<T>(sc[kBudgetEpsilon]);
    interest = sc[kInterestRate] != 0.0;
    growth = static_cast<T>(1.0 + sc[kInterestRate]);
    depreciates = sc[kDepreciation] != 0.0;
    keep = static_cast<T>(1.0 - sc[kDepreciation]);
    productivity = static_cast<T>(sc[kProductivity]);
    tfp_rho = static_cast<T>(sc[kTfpRho]), tfp_sigma = static_cast<T>(sc[kTfpSigma]);
    n_consumers = static_cast<T>(sc[kNConsumers]);
    episode_length = static_cast<T>(sc[kEpisodeLength]);
    price_scale = static_cast<T>(sc[kPriceScale]), wage_scale = static_cast<T>(sc[kWageScale]);
    theta_scale = static_cast<T>(sc[kThetaScale]), capital_scale = static_cast<T>(sc[kCapitalScale]);
    open = fl[kOpen] != 0, export_strict = fl[kExportStrict] != 0, invest_income = fl[kInvestIncome] != 0;
    quadratic = fl[kLabourQuadratic] != 0, welfare_total = fl[kWelfareTotal] != 0, tfp_on = fl[kTfpOn] != 0;

    const auto opts = in[kPrice].options();
    auto make = [&](Output k, at::IntArrayRef sizes) {
      out[k] = at::empty(sizes, opts);
      return out[k].template data_ptr<T>();
    };
    o_price = make(kNextPrice, {E, F}), o_wage = make(kNextWage, {E, F}), o_stock = make(kNextStock, {E, F});
    o_over = make(kNextOverdemanded, {E, F}), o_capital = make(kNextCapital, {E, F});
    o_fb = make(kNextFirmBudget, {E, F}), o_cb = make(kNextConsumerBudget, {E, N});
    o_itax = make(kNextIncomeTax, {E}), o_ctax = make(kNextCorporateTax, {E}), o_t = make(kNextTime, {E});
    o_tfp = make(kNextLogTfp, {E});
    // consumption is built firm-major [E, F, N] and returned as the accounts' [E, N, F] view of it
    consumed = make(kConsumed, {E, F, N});
    out[kConsumed] = out[kConsumed].transpose(1, 2);
    spending = make(kSpending, {E, N}), labour_income = make(kLabourIncome, {E, N}), hours = make(kHours, {E, N});
    sold = make(kSold, {E, F}), exported = make(kExported, {E, F}), produced = make(kProduced, {E, F});
    labour = make(kLabour, {E, F}), revenue = make(kRevenue, {E, F}), wage_bill = make(kWageBill, {E, F});
    investment = make(kInvestment, {E, F}), profit = make(kProfit, {E, F});
    itax_total = make(kIncomeTaxTotal, {E}), ctax_total = make(kCorporateTaxTotal, {E});
    taxes = make(kTaxes, {E}), lump = make(kLumpSum, {E});
    c_reward = make(kConsumerReward, {E, N}), f_reward = make(kFirmReward, {E, F}), welfare = make(kWelfare, {E});
    out[kDone] = at::empty({E}, opts.dtype(at::kBool));
    done = out[kDone].data_ptr<bool>();
    obs_g = make(kObsGlobal, {E, G}), obs_c = make(kObsConsumer, {E, N, DC}), obs_f = make(kObsFirm, {E, F, DF});

    fast_lookup = n_demand <= 16 && n_hours <= 16;
#if defined(__AVX2__) && defined(__FMA__)
    byte_ingest = std::is_same_v<T, float> && sizeof(I) == 1 && fast_lookup && A <= 16;
#else
    byte_ingest = false;
#endif
    if (!byte_ingest) {
      lim32.resize(N * A);
      for (int64_t j = 0; j < N; ++j) {
        for (int64_t i = 0; i < F; ++i) lim32[j * A + i] = static_cast<int32_t>(n_demand - 1);
        lim32[j * A + F] = static_cast<int32_t>(n_hours - 1);
        lim32[j * A + F + 1] = static_cast<int32_t>(F - 1);
      }
    }
    obs_who.assign(8 * DC, 0);
    obs_scale.assign(8 * DC, 0.0f);
    obs_theta.assign(8 * DC, 0.0f);
    for (int64_t p = 0; p < 8 * DC; ++p) {
      const int64_t q = p % DC;
      obs_who[p] = static_cast<int32_t>(p / DC);
      if (q < DB) obs_scale[p] = static_cast<float>(digit_scale[q]);
      obs_theta[p] = q == DB ? -1.0f : 0.0f;  // sign bit set: blendv takes theta
    }
  }
};

// One thread's buffers, reused env after env. Rows of NP: the padding lanes of cons stay 0 (every
// row operation multiplies), so the row loops run whole vectors and never touch the outputs'
// padding-free rows.
template <typename T>
struct Scratch {
  std::vector<T> cons;     // [F, NP] demand, then budget-feasible demand, then consumption
  std::vector<T> pw;       // [F, NP] (c + 1)^(1 - eta), when not summed in registers
  std::vector<T> scale;    // [NP] the basket's cost, then its budget scale
  std::vector<T> usum;     // [NP] sum over firms of (c + 1)^(1 - eta)
  std::vector<T> sp;       // [NP] spending
  std::vector<T> wemp;     // [NP] wage at the consumer's employer
  std::vector<T> hours;    // [NP] hours (the AVX2 readers)
  std::vector<T> total;    // [F] total budget-feasible demand
  std::vector<T> ration;   // [F] the share of demand served
  std::vector<T> corp_paid;  // [F] corporate tax paid
  std::vector<T> lab4;     // [4, F] partial sums of hours
  std::vector<int32_t> employer;  // [NP]
  std::vector<int32_t> xi;        // [N, A] (+ 8) the action block as int32 (the int32 reader)
#if defined(__AVX2__) && defined(__FMA__)
  Grid16 demand16, hours16;
#endif
  template <typename I>
  explicit Scratch(const Step<T, I>& s)
      : cons(s.F * s.NP, T(0)), pw(s.F * s.NP), scale(s.NP, T(0)), usum(s.NP), sp(s.NP), wemp(s.NP), hours(s.NP),
        total(s.F), ration(s.F), corp_paid(s.F), lab4(4 * s.F), employer(s.NP), xi(s.NP * s.A + 8, 0)
#if defined(__AVX2__) && defined(__FMA__)
        , demand16(s.demand_grid, s.n_demand), hours16(s.hours_grid, s.n_hours)
#endif
  {
  }
};

// What one env's events sum up, for the taxes and the welfare.
template <typename T>
struct EnvTotals {
  T income_tax = T(0), consumer_reward = T(0), corporate_tax = T(0), firm_reward = T(0);
};

// ---------------------------------------------------------------------------------------------
// Event 1: reading the consumers' actions. Each reader fills the scratch with this env's demand
// (firm-major), hours, employer, the wage there, and the basket's cost (in scale). Every index is
// checked against its head's limit before event 2: an env with an index out of range stops its
// thread's envs, and the call raises before any output is returned; until then the AVX2 readers'
// indices only select registers.
enum class Read { kSkipped, kDone, kOutOfRange };

#if defined(__AVX2__) && defined(__FMA__)
// Stores one head of 8 consumers j0 .. j0 + 7 (both float32 readers): a demand into the firm-major
// scratch with its cost summed, the hours, or the employer and the wage there (the index clamped:
// the wage lookup reads in bounds even before a bad index is reported).
struct HeadWriter {
  float *cons, *hours, *wemp;
  int32_t* employer;
  const float *price, *wage;
  int64_t stride, n_firms;
  __m256 demand_lo, demand_hi, hours_lo, hours_hi, wage_lo, wage_hi;
  __m256i lim_employer;
  bool wage_regs;  // at most 16 firms: the env's wages in two registers (a gather per 8 consumers
                   // was about 5% of the step)

  template <typename I>
  HeadWriter(const Step<float, I>& s, Scratch<float>& w, int64_t e)
      : cons(w.cons.data()), hours(w.hours.data()), wemp(w.wemp.data()), employer(w.employer.data()),
        price(s.price + e * s.F), wage(s.wage + e * s.F), stride(s.NP), n_firms(s.F),
        demand_lo(w.demand16.lo), demand_hi(w.demand16.hi), hours_lo(w.hours16.lo), hours_hi(w.hours16.hi),
        wage_lo(_mm256_setzero_ps()), wage_hi(_mm256_setzero_ps()),
        lim_employer(_mm256_set1_epi32(static_cast<int>(s.F - 1))), wage_regs(s.F <= 16) {
    if (wage_regs) {  // masked loads read nothing past the row
      const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      wage_lo = _mm256_maskload_ps(wage, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_firms)), lane));
      wage_hi = _mm256_maskload_ps(wage + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_firms) - 8), lane));
    }
  }
  void put(int64_t head, __m256i idx, __m256 live, int64_t j0, __m256& cost) const {
    if (head < n_firms) {
      const __m256 d = _mm256_and_ps(lookup16(demand_lo, demand_hi, idx), live);
      _mm256_storeu_ps(cons + head * stride + j0, d);
      cost = _mm256_fmadd_ps(d, _mm256_set1_ps(price[head]), cost);
    } else if (head == n_firms) {
      _mm256_storeu_ps(hours + j0, lookup16(hours_lo, hours_hi, idx));
    } else {
      const __m256i safe = _mm256_min_epu32(idx, lim_employer);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(employer + j0), safe);
      _mm256_storeu_ps(wemp + j0, wage_regs ? lookup16(wage_lo, wage_hi, safe) : _mm256_i32gather_ps(wage, safe, 4));
    }
  }
};

// uint8 indices, at most 16 heads: 8 consumers' rows are transposed as bytes (16-byte loads, three
// rounds of unpacks), each head widened to int32 and checked against its limit as it is looked up.
template <typename I>
Read read_actions_bytes(const Step<float, I>& s, Scratch<float>& w, int64_t e) {
  const int64_t n_cons = s.N, n_heads = s.A, n_firms = s.F;
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(s.act_c + e * n_cons * n_heads);
  float* const scale = w.scale.data();
  const HeadWriter out(s, w, e);
  const __m256i lim_demand = _mm256_set1_epi32(static_cast<int>(s.n_demand - 1)),
                lim_hours = _mm256_set1_epi32(static_cast<int>(s.n_hours - 1)), lim_employer = out.lim_employer;
  __m256i over = _mm256_setzero_si256();
  for (int64_t j0 = 0; j0 < n_cons; j0 += 8) {
    __m128i r[8], col[8];
    if ((n_cons - j0 - 7) * n_heads >= 16) {  // every 16-byte load stays in this env's block
      for (int l = 0; l < 8; ++l) r[l] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + (j0 + l) * n_heads));
    } else {  // the last rows: a zero-padded copy (index 0 is valid for every head)
      alignas(16) uint8_t tail[8][16] = {};
      for (int64_t l = 0; l < 8 && j0 + l < n_cons; ++l) std::memcpy(tail[l], bytes + (j0 + l) * n_heads, n_heads);
      for (int l = 0; l < 8; ++l) r[l] = _mm_load_si128(reinterpret_cast<const __m128i*>(tail[l]));
    }
    transpose_bytes(r, col);
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(j0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_cons)), lane));
    __m256 cost = _mm256_setzero_ps();
    for (int64_t head = 0; head < n_heads; ++head) {
      const __m128i c = col[head / 2];
      const __m256i idx = _mm256_cvtepu8_epi32((head & 1) ? _mm_unpackhi_epi64(c, c) : c);
      const __m256i head_lim = head < n_firms ? lim_demand : (head == n_firms ? lim_hours : lim_employer);
      over = _mm256_or_si256(over, _mm256_cmpgt_epi32(idx, head_lim));
      out.put(head, idx, live, j0, cost);
    }
    _mm256_storeu_ps(scale + j0, cost);
  }
  if (!_mm256_testz_si256(over, over)) return Read::kOutOfRange;
  std::memcpy(s.hours + e * n_cons, w.hours.data(), n_cons * sizeof(float));
  return Read::kDone;
}

// Other index types with grids of at most 16 values: (a) the block as int32 in a zero-padded
// scratch, checked on the way; (b) 8 consumers x 8 heads at a time, transposed in registers into
// the firm-major scratch and looked up there.
template <typename I>
Read read_actions_int32(const Step<float, I>& s, Scratch<float>& w, int64_t e) {
  using U = std::make_unsigned_t<I>;
  const int64_t n_cons = s.N, n_heads = s.A;
  const I* blk = s.act_c + e * n_cons * n_heads;
  const int32_t* const lim = s.lim32.data();
  int32_t* const xi = w.xi.data();
  float* const scale = w.scale.data();
  __m256i over = _mm256_setzero_si256();
  int64_t k = 0;
  if constexpr (sizeof(I) == 1) {
    const int64_t n_idx = n_cons * n_heads;
    for (; k + 8 <= n_idx; k += 8) {
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + k)));
      over = _mm256_or_si256(over, _mm256_cmpgt_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lim + k))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(xi + k), v);
    }
  }
  uint32_t over_s = 0;
  for (; k < n_cons * n_heads; ++k) {
    const uint64_t u = static_cast<uint64_t>(static_cast<U>(blk[k]));
    over_s |= static_cast<uint32_t>(u > static_cast<uint64_t>(lim[k]));
    xi[k] = static_cast<int32_t>(u);
  }
  if (over_s || !_mm256_testz_si256(over, over)) return Read::kOutOfRange;
  const HeadWriter out(s, w, e);
  for (int64_t j0 = 0; j0 < n_cons; j0 += 8) {
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(j0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_cons)), lane));
    __m256 cost = _mm256_setzero_ps();
    for (int64_t h0 = 0; h0 < n_heads; h0 += 8) {
      __m256 r[8];
      for (int l = 0; l < 8; ++l) r[l] = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + (j0 + l) * n_heads + h0)));
      transpose8(r);
      const int64_t heads = std::min<int64_t>(8, n_heads - h0);
      for (int64_t m = 0; m < heads; ++m) out.put(h0 + m, _mm256_castps_si256(r[m]), live, j0, cost);
    }
    _mm256_storeu_ps(scale + j0, cost);
  }
  std::memcpy(s.hours + e * n_cons, w.hours.data(), n_cons * sizeof(float));
  return Read::kDone;
}
#endif

// Any dtype and grid (float64, grids over 16 values, no AVX2): index by index, after checking them all.
template <typename T, typename I>
Read read_actions_any(const Step<T, I>& s, Scratch<T>& w, int64_t e) {
  using U = std::make_unsigned_t<I>;
  const int64_t F = s.F, N = s.N, A = s.A, NP = s.NP;
  const I* blk = s.act_c + e * N * A;
  const int32_t* const lim = s.lim32.data();
  uint32_t over = 0;
#pragma omp simd reduction(| : over)
  for (int64_t k = 0; k < N * A; ++k) {
    over |= static_cast<uint32_t>(static_cast<uint64_t>(static_cast<U>(blk[k])) > static_cast<uint64_t>(lim[k]));
  }
  if (over) return Read::kOutOfRange;
  const T *p = s.price + e * F, *wage = s.wage + e * F, *demand_grid = s.demand_grid, *hours_grid = s.hours_grid;
  T *cons = w.cons.data(), *h = s.hours + e * N, *wemp = w.wemp.data(), *scale = w.scale.data();
  int32_t* employer = w.employer.data();
  for (int64_t j = 0; j < N; ++j) {
    const I* a = blk + j * A;
    for (int64_t i = 0; i < F; ++i) cons[i * NP + j] = demand_grid[a[i]];
    h[j] = hours_grid[a[F]];
    employer[j] = static_cast<int32_t>(a[F + 1]);
    wemp[j] = wage[a[F + 1]];
  }
  for (int64_t j = 0; j < NP; ++j) scale[j] = T(0);  // the cost, until scale_demand_to_budget turns it into the scale
  for (int64_t i = 0; i < F; ++i) {
    const T* row = cons + i * NP;
    const T pi = p[i];
#pragma omp simd
    for (int64_t j = 0; j < NP; ++j) scale[j] += row[j] * pi;
  }
  return Read::kDone;
}

// The next env's action block, fetched an env ahead (it is read first and often cold: 2% faster on
// 1 thread, 8% on 2; prefetching the outputs for writing was slower).
template <typename T, typename I>
void prefetch_actions(const Step<T, I>& s, int64_t e) {
  const char* next = reinterpret_cast<const char*>(s.act_c + e * s.N * s.A);
  for (int64_t b = 0; b < static_cast<int64_t>(s.N * s.A * sizeof(I)); b += 64) __builtin_prefetch(next + b, 0, 3);
}

// ---------------------------------------------------------------------------------------------
// The events of one env, in the spec's order.

// 1: reads the consumers' actions, then a basket that costs more than the budget is scaled by
// B / cost (scale, per consumer). False when an action index is out of range.
template <typename T, typename I>
bool scale_demand_to_budget(const Step<T, I>& s, Scratch<T>& w, int64_t e) {
  Read read = Read::kSkipped;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (sizeof(I) == 1) {
      if (s.byte_ingest) read = read_actions_bytes(s, w, e);
    }
    if (read == Read::kSkipped && s.fast_lookup) read = read_actions_int32(s, w, e);
  }
#endif
  if (read == Read::kSkipped) read = read_actions_any(s, w, e);
  if (read == Read::kOutOfRange) return false;
  const int64_t N = s.N;
  const T* B = s.budget + e * N;
  T* const scale = w.scale.data();
#pragma omp simd
  for (int64_t j = 0; j < N; ++j) {
    const T cost = scale[j], b = B[j];
    const bool over = (cost > T(0)) && (cost > b);
    scale[j] = over ? std::max(b, T(0)) / cost : T(1);
  }
  return true;
}

// 2: each firm's total (budget-feasible) demand, and its labour, the hours of those who chose it.
template <typename T, typename I>
void sum_demand_and_hours(const Step<T, I>& s, Scratch<T>& w, int64_t e) {
  const int64_t F = s.F, N = s.N, NP = s.NP;
  T *const cons = w.cons.data(), *const scale = w.scale.data(), *const total = w.total.data();
  for (int64_t i = 0; i < F; ++i) {
    T* row = cons + i * NP;
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < NP; ++j) {
      row[j] *= scale[j];
      sum += row[j];
    }
    total[i] = sum;
  }
  // four interleaved partial sums, so that repeated employers do not serialise
  T *const lab4 = w.lab4.data(), *const lab = s.labour + e * F;
  const T* h = s.hours + e * N;
  const int32_t* employer = w.employer.data();
  for (int64_t q = 0; q < 4 * F; ++q) lab4[q] = T(0);
  for (int64_t j = 0; j < N; ++j) lab4[(j & 3) * F + employer[j]] += h[j];
  for (int64_t i = 0; i < F; ++i) lab[i] = (lab4[i] + lab4[F + i]) + (lab4[2 * F + i] + lab4[3 * F + i]);
}

// 3: demand above the stock is served pro rata (ration), so the whole stock is sold; the
// overdemanded flag is the next state's.
template <typename T, typename I>
void ration_goods(const Step<T, I>& s, Scratch<T>& w, int64_t e) {
  const int64_t F = s.F;
  const T *y = s.stock + e * F, *total = w.total.data();
  T *ration = w.ration.data(), *sold = s.sold + e * F, *over = s.o_over + e * F;
  for (int64_t i = 0; i < F; ++i) {
    const bool r = (total[i] > T(0)) && (total[i] > y[i]);
    ration[i] = r ? y[i] / total[i] : T(1);
    sold[i] = r ? y[i] : total[i];
    over[i] = r ? T(1) : T(0);
  }
}

// 4: consumers receive the rationed goods and pay for them; utility less the disutility of work is
// their reward; labour income and its tax. Sums the income tax and the rewards into totals.
template <typename T, typename I>
void consume(const Step<T, I>& s, Scratch<T>& w, int64_t e, EnvTotals<T>& totals) {
  const int64_t F = s.F, N = s.N, NP = s.NP;
  const T* p = s.price + e * F;
  T* const cons = w.cons.data();
  T* const sp_s = w.sp.data();
  T* const usum_s = w.usum.data();
  for (int64_t j = 0; j < NP; ++j) { sp_s[j] = T(0); usum_s[j] = T(0); }
  bool received = false;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    const PowSplit split = s.pow_split;
    if (split.polynomial) {
      // one pass per firm row: rationed consumption (stored once, final), spending, and
      // (c + 1)^(1 - eta) summed into the utility, kRowChains vectors at a time in registers
      for (int64_t i = 0; i < F; ++i) {
        receive_row<kRowChains>(cons + i * NP, s.consumed + (e * F + i) * N, N, NP, w.ration[i], p[i], split.f,
                                split.f_log2e, split.times_x, sp_s, usum_s);
      }
      received = true;
    }
  }
#endif
  if (!received) {
    for (int64_t i = 0; i < F; ++i) {
      T* row = cons + i * NP;
      const T r = w.ration[i], pi = p[i];
#pragma omp simd
      for (int64_t j = 0; j < NP; ++j) {
        row[j] *= r;
        sp_s[j] += row[j] * pi;
      }
      std::memcpy(s.consumed + (e * F + i) * N, row, N * sizeof(T));  // consumption is final here
    }
    // (c + 1)^(1 - eta) of the whole [F, NP] block at once (a rationed-out good has c = 0 and
    // gives exactly 1)
    T* const pw = w.pw.data();
    power_all(cons, s.one_minus_eta, pw, F * NP);
    for (int64_t i = 0; i < F; ++i) {
      const T* row = pw + i * NP;
#pragma omp simd
      for (int64_t j = 0; j < NP; ++j) usum_s[j] += row[j];
    }
  }
  std::memcpy(s.spending + e * N, sp_s, N * sizeof(T));
  // the reward loop vectorises (the sums' order is that of 8 lanes)
  const T tf = s.theta_factor[e], tau_inc = s.income_tax[e], k_util = s.one_minus_eta, fF = static_cast<T>(F);
  const T *const us = usum_s, *const we = w.wemp.data(), *const hj = s.hours + e * N, *const theta_j = s.theta;
  T *const cr = s.c_reward + e * N, *const lie = s.labour_income + e * N;
  T itax_sum = T(0), reward_sum = T(0);
  if (s.quadratic) {
#pragma omp simd reduction(+ : itax_sum, reward_sum)
    for (int64_t j = 0; j < N; ++j) {
      const T c = (us[j] - fF) / k_util - T(0.5) * (theta_j[j] * tf) * (hj[j] * hj[j]), l = we[j] * hj[j];
      cr[j] = c;
      lie[j] = l;
      itax_sum += tau_inc * l;
      reward_sum += c;
    }
  } else {
#pragma omp simd reduction(+ : itax_sum, reward_sum)
    for (int64_t j = 0; j < N; ++j) {
      const T c = (us[j] - fF) / k_util - T(0.5) * (theta_j[j] * tf) * hj[j], l = we[j] * hj[j];
      cr[j] = c;
      lie[j] = l;
      itax_sum += tau_inc * l;
      reward_sum += c;
    }
  }
  totals.income_tax = itax_sum;
  totals.consumer_reward = reward_sum;
}

// 5: the export market buys min(q_export, leftover stock) from firms whose price reaches p_export
// (none in a closed economy).
template <typename T, typename I>
void export_goods(const Step<T, I>& s, int64_t e) {
  const int64_t F = s.F;
  const bool open = s.open, strict = s.export_strict;
  const T px = s.p_export, qx = s.q_export;
  const T *const p = s.price + e * F, *const y = s.stock + e * F, *const sold = s.sold + e * F;
  T* const ex = s.exported + e * F;
  for (int64_t i = 0; i < F; ++i) {
    T x = T(0);
    if (open) {
      const bool eligible = strict ? p[i] > px : p[i] >= px;
      const T leftover = std::max(y[i] - sold[i], T(0));
      x = eligible ? std::min(leftover, qx) : T(0);
    }
    ex[i] = x;
  }
}

// 6: firms sell, pay wages, invest, pay corporate tax on profit (their reward is what is left),
// produce Y = A K^(1-a) L^a, and post the next price and wage; the stock carries the unsold goods
// and the new ones. Sums the corporate tax and the rewards into totals. False when a firm's action
// index is out of range.
template <typename T, typename I>
bool run_firms(const Step<T, I>& s, Scratch<T>& w, int64_t e, EnvTotals<T>& totals) {
  const int64_t F = s.F;
  const T tau_corp = s.corporate_tax[e];
  const bool from_income = s.invest_income;
  const T frac_inv = s.inv_frac;
  const T *const p = s.price + e * F, *const wage = s.wage + e * F, *const y = s.stock + e * F,
          *const sold = s.sold + e * F, *const ex = s.exported + e * F, *const lab = s.labour + e * F,
          *const fb = s.firm_budget + e * F;
  T *const revo = s.revenue + e * F, *const wbo = s.wage_bill + e * F, *const invo = s.investment + e * F,
    *const pfo = s.profit + e * F, *const fro = s.f_reward + e * F, *const cpo = w.corp_paid.data();
  T ctax_sum = T(0), firm_reward_sum = T(0);
#pragma omp simd reduction(+ : ctax_sum, firm_reward_sum)
  for (int64_t i = 0; i < F; ++i) {
    const T rev = (sold[i] + ex[i]) * p[i], wb = lab[i] * wage[i];
    const T gross = rev - wb;
    const T inv = std::max(frac_inv * (from_income ? gross : fb[i]), T(0));
    const T prof = gross - inv;
    const T paid = tau_corp * std::max(prof, T(0));
    const T fr = prof - paid;
    revo[i] = rev;
    wbo[i] = wb;
    invo[i] = inv;
    pfo[i] = prof;
    cpo[i] = paid;
    fro[i] = fr;
    ctax_sum += paid;
    firm_reward_sum += fr;
  }
  totals.corporate_tax = ctax_sum;
  totals.firm_reward = firm_reward_sum;

  const T tfp = s.productivity * std::exp(s.log_tfp[e]);
  const T *const k = s.capital + e * F, *const alpha = s.alpha;
  T* const pr = s.produced + e * F;
  bool produced_fast = false;
  if constexpr (std::is_same_v<T, float>) {
    // K^(1 - a) L^a = K 2^(a log2(L / K)) in double, vectorised over firms (two powf calls per firm
    // were about 6% of the step); no labour makes nothing (a > 0). For finite float32 K > 0 and
    // L > 0, L / K and its log2 stay well inside double's range; the loop below redoes the rest
    // with the C library.
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) {
      const double ki = static_cast<double>(k[i]), li = static_cast<double>(lab[i]);
      const double ratio = li > 0.0 ? li / ki : 1.0;
      const double yi = ki * exp2_moderate(static_cast<double>(alpha[i]) * log2_normal(ratio));
      pr[i] = static_cast<T>(li > 0.0 ? static_cast<double>(tfp) * yi : 0.0);
    }
    produced_fast = true;
  }
  for (int64_t i = 0; i < F; ++i) {  // zero capital, or a hand-made state's negative or non-finite values
    const T ki = k[i], li = lab[i];
    if (!produced_fast || !(ki > T(0) && ki <= std::numeric_limits<T>::max() && li >= T(0) &&
                            li <= std::numeric_limits<T>::max())) {
      pr[i] = tfp * std::pow(ki, T(1) - alpha[i]) * std::pow(li, alpha[i]);
    }
  }

  bool in_range = true;
  const I* const af = s.act_f + e * F * 2;
  const int64_t n_price = s.n_price, n_wage = s.n_wage;
  const T *const price_grid = s.price_grid, *const wage_grid = s.wage_grid;
  T *const po = s.o_price + e * F, *const wo = s.o_wage + e * F, *const so = s.o_stock + e * F;
  for (int64_t i = 0; i < F; ++i) {
    int64_t kp = af[i * 2], kw = af[i * 2 + 1];
    if (kp < 0 || kp >= n_price) { in_range = false; kp = 0; }
    if (kw < 0 || kw >= n_wage) { in_range = false; kw = 0; }
    po[i] = price_grid[kp];
    wo[i] = wage_grid[kw];
    so[i] = y[i] - sold[i] - ex[i] + pr[i];
  }
  return in_range;
}

// 7: one quarter passes; the episode is done at its last step.
template <typename T, typename I>
void advance_time(const Step<T, I>& s, int64_t e) {
  const T t_next = s.t[e] + T(1);
  s.o_t[e] = t_next;
  s.done[e] = t_next >= s.episode_length;
}

// 8: the government keeps no budget: all tax revenue goes back as an equal lump sum per consumer.
template <typename T, typename I>
void redistribute_taxes(const Step<T, I>& s, int64_t e, const EnvTotals<T>& totals) {
  s.itax_total[e] = totals.income_tax;
  s.ctax_total[e] = totals.corporate_tax;
  s.taxes[e] = totals.income_tax + totals.corporate_tax;
  s.lump[e] = s.taxes[e] / s.n_consumers;
}

// The government's reward: the consumers' rewards, plus the firms' weighted ("total" welfare).
template <typename T, typename I>
void government_reward(const Step<T, I>& s, int64_t e, const EnvTotals<T>& totals) {
  s.welfare[e] = s.welfare_total ? totals.consumer_reward + s.fww * totals.firm_reward : totals.consumer_reward;
}

// 9: the income and corporate tax rates the government chose, applied from the next step. False
// when an index is out of range.
template <typename T, typename I>
bool set_taxes(const Step<T, I>& s, int64_t e) {
  bool in_range = true;
  int64_t g0 = s.act_g[e * 2], g1 = s.act_g[e * 2 + 1];
  if (g0 < 0 || g0 >= s.n_tax) { in_range = false; g0 = 0; }
  if (g1 < 0 || g1 >= s.n_tax) { in_range = false; g1 = 0; }
  s.o_itax[e] = s.tax_grid[g0];
  s.o_ctax[e] = s.tax_grid[g1];
  return in_range;
}

// 10: the step's flows go into the budgets (positive ones earn interest), investment into capital;
// log TFP follows its AR(1) when the shock is on.
template <typename T, typename I>
void update_budgets(const Step<T, I>& s, int64_t e) {
  const int64_t F = s.F, N = s.N;
  const T eps = s.eps, tau_inc = s.income_tax[e], lump_e = s.lump[e], growth = s.growth, keep = s.keep;
  const bool grows = s.interest, depreciates = s.depreciates;
  const T *const B = s.budget + e * N, *const sp = s.spending + e * N, *const lie = s.labour_income + e * N;
  T* const cb = s.o_cb + e * N;
#pragma omp simd
  for (int64_t j = 0; j < N; ++j) cb[j] = B[j] + (((eps - sp[j]) + lie[j]) - tau_inc * lie[j]) + lump_e;
  if (grows) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) cb[j] = cb[j] > T(0) ? cb[j] * growth : cb[j];
  }
  const T *const fb = s.firm_budget + e * F, *const fr = s.f_reward + e * F, *const k = s.capital + e * F,
          *const inv = s.investment + e * F;
  T *const fbo = s.o_fb + e * F, *const ko = s.o_capital + e * F;
  for (int64_t i = 0; i < F; ++i) {
    T v = fb[i] + fr[i];
    if (grows) v = v > T(0) ? v * growth : v;
    fbo[i] = v;
    ko[i] = depreciates ? keep * k[i] + inv[i] : k[i] + inv[i];
  }
  const T log_tfp = s.log_tfp[e];
  s.o_tfp[e] = s.tfp_on ? s.tfp_rho * log_tfp + s.tfp_sigma * (s.noise != nullptr ? s.noise[e] : T(0)) : log_tfp;
}

// The next state's observations (observe.py): the global part, and each consumer's and firm's own.
template <typename T, typename I>
void observe(const Step<T, I>& s, int64_t e) {
  const int64_t F = s.F, N = s.N, D = s.D, DB = s.DB, DC = s.DC, DF = s.DF;
  const bool digits = s.digits;
  const T* const digit_scale = s.digit_scale;
  T* g = s.obs_g + e * s.G;
  int64_t q = 0;
  for (int64_t i = 0; i < F; ++i) g[q++] = s.o_price[e * F + i] / s.price_scale;
  for (int64_t i = 0; i < F; ++i) g[q++] = s.o_wage[e * F + i] / s.wage_scale;
  for (int64_t i = 0; i < F; ++i) {
    const T v = s.o_stock[e * F + i];
    if (digits) {
      for (int64_t d = 0; d < D; ++d) { const T u = digit_scale[d] * v; g[q++] = u - std::floor(u); }
    } else {
      g[q++] = v;
    }
  }
  for (int64_t i = 0; i < F; ++i) g[q++] = s.o_over[e * F + i];
  g[q++] = s.o_itax[e];
  g[q++] = s.o_ctax[e];
  g[q++] = s.o_t[e] / s.episode_length;

  const T tf = s.theta_factor[e], theta_scale = s.theta_scale;
  const T *const cb = s.o_cb + e * N, *const theta = s.theta;
  int64_t j_obs = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    if (digits) {
      // 8 consumers' rows are 8 x DC consecutive floats, i.e. DC whole vectors: lane l of vector
      // k is consumer (8k + l) / DC's feature (8k + l) % DC, fetched by a permute
      const int64_t n_cons = N, n_obs = DC;
      const int32_t* const who_pattern = s.obs_who.data();
      const float *const scale_pattern = s.obs_scale.data(), *const theta_pattern = s.obs_theta.data();
      const __m256 tf8 = _mm256_set1_ps(tf), ts8 = _mm256_set1_ps(theta_scale);
      float* const oc0 = s.obs_c + e * n_cons * n_obs;
      for (; j_obs + 8 <= n_cons; j_obs += 8) {
        const __m256 vb = _mm256_loadu_ps(cb + j_obs);
        const __m256 vt = _mm256_div_ps(_mm256_mul_ps(_mm256_loadu_ps(theta + j_obs), tf8), ts8);
        float* const oc = oc0 + j_obs * n_obs;
        for (int64_t k = 0; k < n_obs; ++k) {
          const __m256i who = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(who_pattern + 8 * k));
          const __m256 u = _mm256_mul_ps(_mm256_loadu_ps(scale_pattern + 8 * k), _mm256_permutevar8x32_ps(vb, who));
          const __m256 digit = _mm256_sub_ps(u, _mm256_floor_ps(u));
          const __m256 th = _mm256_permutevar8x32_ps(vt, who);
          _mm256_storeu_ps(oc + 8 * k, _mm256_blendv_ps(digit, th, _mm256_loadu_ps(theta_pattern + 8 * k)));
        }
      }
    }
  }
#endif
  for (int64_t j = j_obs; j < N; ++j) {
    T* oc = s.obs_c + (e * N + j) * DC;
    const T v = cb[j];
    if (digits) {
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) { const T u = digit_scale[d] * v; oc[d] = u - std::floor(u); }
    } else {
      oc[0] = v;
    }
    oc[DB] = (theta[j] * tf) / theta_scale;
  }
  for (int64_t i = 0; i < F; ++i) {
    T* of = s.obs_f + (e * F + i) * DF;
    const T v = s.o_fb[e * F + i];
    if (digits) {
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) { const T u = digit_scale[d] * v; of[d] = u - std::floor(u); }
    } else {
      of[0] = v;
    }
    of[DB] = s.o_capital[e * F + i] / s.capital_scale;
    of[DB + 1] = s.alpha[i];
    for (int64_t k = 0; k < F; ++k) of[DB + 2 + k] = k == i ? T(1) : T(0);
  }
}

// One env's step: the events in order, then the observations. False when an action index is out
// of range (the consumers' are checked before event 2 reads them).
template <typename T, typename I>
bool step_env(const Step<T, I>& s, Scratch<T>& w, int64_t e) {
  EnvTotals<T> totals;
  if (!scale_demand_to_budget(s, w, e)) return false;  // 1
  sum_demand_and_hours(s, w, e);                        // 2
  ration_goods(s, w, e);                                // 3
  consume(s, w, e, totals);                             // 4
  export_goods(s, e);                                   // 5
  bool in_range = run_firms(s, w, e, totals);           // 6
  advance_time(s, e);                                   // 7
  redistribute_taxes(s, e, totals);                     // 8
  government_reward(s, e, totals);
  in_range = set_taxes(s, e) && in_range;               // 9
  update_budgets(s, e);                                 // 10
  observe(s, e);
  return in_range;
}

// ---------------------------------------------------------------------------------------------
// The entry point.

// The step for one float and index type: envs in parallel on torch's threads, each env whole on one.
template <typename T, typename I>
std::vector<at::Tensor> step_typed(const std::vector<at::Tensor>& in, const std::vector<double>& sc,
                                   const std::vector<int64_t>& fl) {
  std::vector<at::Tensor> out(kNumOutputs);
  const Step<T, I> s(in, sc, fl, out);
  std::atomic<bool> bad_action{false};
  at::parallel_for(0, s.E, 8, [&](int64_t begin, int64_t end) {
    Scratch<T> w(s);
    bool in_range = true;
    for (int64_t e = begin; e < end && in_range; ++e) {
      if (e + 1 < end) prefetch_actions(s, e + 1);
      in_range = step_env(s, w, e);
    }
    if (!in_range) bad_action.store(true);
  });
  TORCH_CHECK(!bad_action.load(),
              "an action index is out of range; step with validate=True to name the agent and head");
  return out;
}

// inputs: tensors in the order of Input (INPUTS); scalars and flags in the order of Scalar and Flag.
// Returns the tensors in the order of Output (OUTPUTS).
std::vector<at::Tensor> step(std::vector<at::Tensor> in, const std::vector<double>& scalars,
                             const std::vector<int64_t>& flags) {
  TORCH_CHECK(in.size() == kNumInputs, "fused step: expected ", int(kNumInputs), " tensors, got ", in.size());
  TORCH_CHECK(scalars.size() == kNumScalars, "fused step: expected ", int(kNumScalars), " scalars");
  TORCH_CHECK(flags.size() == kNumFlags, "fused step: expected ", int(kNumFlags), " flags");
  const auto dtype = in[kPrice].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "fused step: dtype must be float32 or float64");
  // indices are read as uint8, int32 or int64 when all three action tensors share that dtype;
  // anything else is widened to int64 (never narrowed: 261 must not become a valid 5)
  const auto c = in[kConsumerActions].scalar_type();
  const bool shared = in[kFirmActions].scalar_type() == c && in[kGovernmentActions].scalar_type() == c;
  const auto index = shared && (c == at::kByte || c == at::kInt) ? c : at::kLong;
  for (size_t k = 0; k < in.size(); ++k) {
    TORCH_CHECK(in[k].device().is_cpu(), "fused step: input ", kInputNames[k], " must be a CPU tensor");
    const bool action = k == kConsumerActions || k == kFirmActions || k == kGovernmentActions;
    if (action && in[k].scalar_type() != index && at::isIntegralType(in[k].scalar_type(), false)) {
      in[k] = in[k].to(index);
    }
    const auto want = action ? index : dtype;
    TORCH_CHECK(in[k].scalar_type() == want, "fused step: input ", kInputNames[k], " has dtype ",
                in[k].scalar_type(), ", expected ", want);
    if (!in[k].is_contiguous()) in[k] = in[k].contiguous();
  }
  const bool f64 = dtype == at::kDouble;
  if (index == at::kByte) return f64 ? step_typed<double, uint8_t>(in, scalars, flags) : step_typed<float, uint8_t>(in, scalars, flags);
  if (index == at::kInt) return f64 ? step_typed<double, int32_t>(in, scalars, flags) : step_typed<float, int32_t>(in, scalars, flags);
  return f64 ? step_typed<double, int64_t>(in, scalars, flags) : step_typed<float, int64_t>(in, scalars, flags);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("step", &step, "One fused economy step on CPU (see rbc_ray/economy/fused.py)", pybind11::arg("inputs"),
        pybind11::arg("scalars"), pybind11::arg("flags"));
  m.attr("INPUTS") = kInputNames;
  m.attr("OUTPUTS") = kOutputNames;
  m.attr("SCALARS") = kScalarNames;
  m.attr("FLAGS") = kFlagNames;
}
