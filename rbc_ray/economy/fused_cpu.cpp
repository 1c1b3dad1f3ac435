// The economy step fused into one pass per env, for CPU (rbc_ray/economy/fused.py loads it).
//
// Same maths and order of events as step.py (spec: ../shared/spec/rbc_economy.md); the torch step
// stays the definition and the GPU path, and the tests hold this kernel to the per-agent reference
// loop. Why it exists: on a 2-core CPU the torch step is ~100 small ops whose dispatch and memory
// passes cost more than the arithmetic; here every env is one cache-resident pass, envs run in
// parallel on torch's intra-op threads, and the [F, N] utility loop vectorises (AVX2 when built so).
// In float32 with AVX2 the consumers' [N, F + 2] action block is turned firm-major in registers
// (uint8 with at most 16 heads: byte transposes; otherwise 8x8 transposes of int32) and its grids
// looked up there (an index-by-index loop was about a quarter of the step). Indices may be uint8,
// int32 or int64; uint8 moves an eighth of the bytes. The hot loops read locals, not the parallel
// lambda's captures (see there), and each economy recycles its output buffer (OutputPool).
// The consumers' observation rows are built 8 consumers (whole vectors) at a time by permutes, and
// the firms' production in vectorised double log2/exp2 (float32 only).
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
#include <mutex>
#include <type_traits>
#include <vector>

namespace {

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
// The firm-row pass interleaves 6: on the Zen 3 machine of session 11 that was about 3% faster than 4
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

// The output buffers of one economy, recycled: a buffer is taken again once every output carved
// from it has died (this pool holds its storage's only reference). A fresh buffer per call (1.6 MB
// at 128 envs) can land on heap pages glibc has just given back to the kernel: in about one process
// in five on the project's machine each step then took ~400 page faults and ran 2.7x slower.
class OutputPool {
 public:
  at::Tensor take(int64_t numel, const at::TensorOptions& opts) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const at::Tensor& b : buffers_) {
      if (b.numel() == numel && b.scalar_type() == opts.dtype().toScalarType() && unused(b)) return b;
    }
    at::Tensor fresh = at::empty({numel}, opts);
    for (at::Tensor& b : buffers_) {
      if (unused(b)) { b = fresh; return fresh; }  // a free buffer of another size or dtype
    }
    if (buffers_.size() < kMaxBuffers) buffers_.push_back(fresh);
    return fresh;
  }
  int64_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(buffers_.size());
  }

 private:
  // a stepping loop keeps one step's outputs alive (the state and the last result) while the
  // next is made: two buffers turn over; more is room for callers that keep a step or two longer
  static constexpr size_t kMaxBuffers = 4;
  // nothing but this pool refers to the buffer's tensor or its storage (no views, no weak refs)
  static bool unused(const at::Tensor& b) {
    const auto weak = b.storage().getWeakStorageImpl();  // itself a weak ref: 1 + the implicit one
    return b.use_count() == 1 && weak.use_count() == 1 && weak.weak_use_count() == 2;
  }
  std::mutex mutex_;
  std::vector<at::Tensor> buffers_;
};

// Scalars of the config, in the order fused.py passes them.
enum Scalar {
  kEta, kPExport, kQExport, kInvestmentFraction, kFirmWelfareWeight, kBudgetEpsilon,
  kInterestRate, kDepreciation, kProductivity, kTfpRho, kTfpSigma, kNConsumers, kEpisodeLength,
  kPriceScale, kWageScale, kThetaScale, kCapitalScale, kNumScalars
};
enum Flag {
  kOpen, kExportStrict, kInvestIncome, kLabourQuadratic, kWelfareTotal, kDigits, kTfpOn, kNumFlags
};

template <typename T, typename I>
std::vector<at::Tensor> step_impl(const std::vector<at::Tensor>& in, const std::vector<double>& sc,
                                  const std::vector<int64_t>& fl, OutputPool* pool) {
  const at::Tensor& price_t = in[0];
  const int64_t E = price_t.size(0), F = price_t.size(1), N = in[5].size(1);
  const int64_t D = in[18].size(0);
  const bool digits = fl[kDigits] != 0;
  const int64_t DB = digits ? D : 1;            // width of an encoded budget or stock
  const int64_t G = 3 * F + F * DB + 3;         // global observation
  const int64_t DC = DB + 1;                    // consumer own part
  const int64_t DF = DB + 2 + F;                // firm own part
  const int64_t A = F + 2;                      // consumer action heads

  const T* price = in[0].data_ptr<T>();
  const T* wage = in[1].data_ptr<T>();
  const T* stock = in[2].data_ptr<T>();
  const T* capital = in[3].data_ptr<T>();
  const T* firm_budget = in[4].data_ptr<T>();
  const T* budget = in[5].data_ptr<T>();
  const T* income_tax = in[6].data_ptr<T>();
  const T* corporate_tax = in[7].data_ptr<T>();
  const T* tt = in[8].data_ptr<T>();
  const T* log_tfp = in[9].data_ptr<T>();
  const T* theta_factor = in[10].data_ptr<T>();
  const T* theta = in[11].data_ptr<T>();
  const T* alpha = in[12].data_ptr<T>();
  const T* demand_grid = in[13].data_ptr<T>();
  const T* hours_grid = in[14].data_ptr<T>();
  const T* price_grid = in[15].data_ptr<T>();
  const T* wage_grid = in[16].data_ptr<T>();
  const T* tax_grid = in[17].data_ptr<T>();
  const T* digit_scale = in[18].data_ptr<T>();
  const I* act_c = in[19].data_ptr<I>();
  const I* act_f = in[20].data_ptr<I>();
  const I* act_g = in[21].data_ptr<I>();
  const bool has_noise = in[22].numel() == E;
  const T* noise = has_noise ? in[22].data_ptr<T>() : nullptr;
  const int64_t n_demand = in[13].size(0), n_hours = in[14].size(0), n_price = in[15].size(0),
                n_wage = in[16].size(0), n_tax = in[17].size(0);

  const T one_minus_eta = static_cast<T>(1.0 - sc[kEta]);
  const T p_export = static_cast<T>(sc[kPExport]), q_export = static_cast<T>(sc[kQExport]);
  const T inv_frac = static_cast<T>(sc[kInvestmentFraction]);
  const T fww = static_cast<T>(sc[kFirmWelfareWeight]);
  const T eps = static_cast<T>(sc[kBudgetEpsilon]);
  const double interest = sc[kInterestRate];
  const T growth = static_cast<T>(1.0 + sc[kInterestRate]);
  const double dep = sc[kDepreciation];
  const T keep = static_cast<T>(1.0 - sc[kDepreciation]);
  const T productivity = static_cast<T>(sc[kProductivity]);
  const T tfp_rho = static_cast<T>(sc[kTfpRho]), tfp_sigma = static_cast<T>(sc[kTfpSigma]);
  const T n_consumers = static_cast<T>(sc[kNConsumers]);
  const T episode_length = static_cast<T>(sc[kEpisodeLength]);
  const T price_scale = static_cast<T>(sc[kPriceScale]), wage_scale = static_cast<T>(sc[kWageScale]);
  const T theta_scale = static_cast<T>(sc[kThetaScale]), capital_scale = static_cast<T>(sc[kCapitalScale]);

  // Every float output is a slice of one buffer: one allocation per call instead of 33 (a caller
  // that keeps any one output keeps the whole step's buffer alive, about 12 KB per env), taken
  // from the economy's pool when there is one.
  const auto opts = price_t.options();
  const int64_t done_words = (E + static_cast<int64_t>(sizeof(T)) - 1) / static_cast<int64_t>(sizeof(T));
  const int64_t total = 15 * E * F + 5 * E * N + 9 * E + E * F * N + E * G + E * N * DC + E * F * DF + done_words;
  at::Tensor buffer = pool != nullptr ? pool->take(total, opts) : at::empty({total}, opts);
  T* base = buffer.data_ptr<T>();
  int64_t used = 0;
  // Each output is a TensorImpl on the buffer's storage, made directly: from_blob (a storage and a
  // deleter per tensor) cost about 0.6 us each, most of a small step's fixed cost.
  const c10::Storage& storage = buffer.storage();
  auto carve = [&](at::IntArrayRef sizes) {
    int64_t n = 1;
    for (auto s : sizes) n *= s;
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(storage), buffer.key_set(), buffer.dtype());
    impl->set_sizes_contiguous(sizes);
    impl->set_storage_offset(used);
    used += n;
    return at::Tensor(std::move(impl));
  };
  // consumption is built firm-major [E, F, N] and returned as the accounts' [E, N, F] view of it
  // (a transpose in Python cost about 1.3 us per step)
  auto carve_consumed = [&]() {
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(storage), buffer.key_set(), buffer.dtype());
    const int64_t sizes[3] = {E, N, F}, strides[3] = {F * N, 1, N};
    impl->set_sizes_and_strides(at::IntArrayRef(sizes, 3), at::IntArrayRef(strides, 3), used);
    used += E * F * N;
    return at::Tensor(std::move(impl));
  };
  auto ef = [&]() { return carve({E, F}); };
  auto en = [&]() { return carve({E, N}); };
  auto e1 = [&]() { return carve({E}); };
  // next state
  at::Tensor n_price_t = ef(), n_wage_t = ef(), n_stock_t = ef(), n_over_t = ef(), n_capital_t = ef(),
             n_fb_t = ef(), n_cb_t = en(), n_itax_t = e1(), n_ctax_t = e1(), n_t_t = e1(),
             n_tfp_t = e1();
  // accounts
  at::Tensor consumed_t = carve_consumed(), spending_t = en(), li_t = en(), hours_t = en(),
             sold_t = ef(), exported_t = ef(), produced_t = ef(), labour_t = ef(), revenue_t = ef(),
             wage_bill_t = ef(), investment_t = ef(), profit_t = ef(), itax_total_t = e1(),
             ctax_total_t = e1(), taxes_t = e1(), lump_t = e1();
  // rewards, done, observations
  at::Tensor c_reward_t = en(), f_reward_t = ef(), welfare_t = e1();
  at::Tensor obs_g_t = carve({E, G}), obs_c_t = carve({E, N, DC}), obs_f_t = carve({E, F, DF});
  at::Tensor done_t;
  {  // the done flags: E bools in the buffer's last words (a bool tensor of its own cost an allocation)
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(storage), buffer.key_set(),
                                                     caffe2::TypeMeta::Make<bool>());
    impl->set_sizes_contiguous({E});
    impl->set_storage_offset(used * static_cast<int64_t>(sizeof(T)));  // in bools, i.e. bytes
    used += done_words;
    done_t = at::Tensor(std::move(impl));
  }
  TORCH_CHECK(used == total, "fused step: output layout mismatch");

  T *o_price = n_price_t.data_ptr<T>(), *o_wage = n_wage_t.data_ptr<T>(), *o_stock = n_stock_t.data_ptr<T>(),
    *o_over = n_over_t.data_ptr<T>(), *o_capital = n_capital_t.data_ptr<T>(), *o_fb = n_fb_t.data_ptr<T>(),
    *o_cb = n_cb_t.data_ptr<T>(), *o_itax = n_itax_t.data_ptr<T>(), *o_ctax = n_ctax_t.data_ptr<T>(),
    *o_t = n_t_t.data_ptr<T>(), *o_tfp = n_tfp_t.data_ptr<T>();
  T *consumed = consumed_t.data_ptr<T>(), *spending = spending_t.data_ptr<T>(), *li = li_t.data_ptr<T>(),
    *hours = hours_t.data_ptr<T>(), *sold = sold_t.data_ptr<T>(), *exported = exported_t.data_ptr<T>(),
    *produced = produced_t.data_ptr<T>(), *labour = labour_t.data_ptr<T>(), *revenue = revenue_t.data_ptr<T>(),
    *wage_bill = wage_bill_t.data_ptr<T>(), *investment = investment_t.data_ptr<T>(),
    *profit = profit_t.data_ptr<T>(), *itax_total = itax_total_t.data_ptr<T>(),
    *ctax_total = ctax_total_t.data_ptr<T>(), *taxes = taxes_t.data_ptr<T>(), *lump = lump_t.data_ptr<T>();
  T *c_reward = c_reward_t.data_ptr<T>(), *f_reward = f_reward_t.data_ptr<T>(), *welfare = welfare_t.data_ptr<T>();
  bool* done = done_t.data_ptr<bool>();
  T *obs_g = obs_g_t.data_ptr<T>(), *obs_c = obs_c_t.data_ptr<T>(), *obs_f = obs_f_t.data_ptr<T>();

  std::atomic<bool> bad_action{false};
  using U = std::make_unsigned_t<I>;
  // the AVX2 ingest looks the grids up in registers (up to 16 values each); uint8 indices with at
  // most 16 heads are read as bytes and checked head by head, the rest against lim32
  const bool fast_lookup = n_demand <= 16 && n_hours <= 16;
#if defined(__AVX2__) && defined(__FMA__)
  const bool byte_ingest = std::is_same_v<T, float> && sizeof(I) == 1 && fast_lookup && A <= 16;
#else
  const bool byte_ingest = false;
#endif
  std::vector<int32_t> lim32(byte_ingest ? 0 : N * A);  // the largest allowed index of each head, per consumer
  for (int64_t j = 0; !byte_ingest && j < N; ++j) {
    for (int64_t i = 0; i < F; ++i) lim32[j * A + i] = static_cast<int32_t>(n_demand - 1);
    lim32[j * A + F] = static_cast<int32_t>(n_hours - 1);
    lim32[j * A + F + 1] = static_cast<int32_t>(F - 1);
  }

  // the consumer observation's permute patterns (8 consumers = DC vectors): who, digit scale, theta lane
  std::vector<int32_t> obs_who(8 * DC);
  std::vector<float> obs_scale(8 * DC, 0.0f), obs_theta(8 * DC, 0.0f);
  for (int64_t p = 0; p < 8 * DC; ++p) {
    const int64_t q = p % DC;
    obs_who[p] = static_cast<int32_t>(p / DC);
    if (q < DB) obs_scale[p] = static_cast<float>(digit_scale[q]);
    obs_theta[p] = q == DB ? -1.0f : 0.0f;  // sign bit set: blendv takes theta
  }
  const int64_t NP = (N + 7) / 8 * 8;  // the scratch rows' stride: whole 8-float vectors, zero padded
  // the utility's power in registers when power_all would take its polynomial path
  const PowSplit pow_split(static_cast<float>(one_minus_eta));
  at::parallel_for(0, E, 8, [&](int64_t begin, int64_t end) {
    // per-thread scratch; the padding lanes of cons stay 0 (every row operation multiplies), so the
    // row loops run whole vectors and never touch the outputs' padding-free rows
    std::vector<T> cons_scratch(F * NP, T(0)), pw(F * NP), scale(NP, T(0)), usum(NP), sp_s(NP), wemp(NP),
        total(F), ration(F), corp_paid(F), lab4(4 * F);
    std::vector<T> h_s(NP);
    std::vector<int32_t> employer(NP), xi_s(NP * A + 8, 0);
#if defined(__AVX2__) && defined(__FMA__)
    const Grid16 demand16(demand_grid, n_demand), hours16(hours_grid, n_hours);
#endif
    // Locals for what the hot loops read: a capture lives in the caller's frame, and after every
    // vector store (a may_alias type) the compiler reloads it, pointer and all (in the consumer
    // observation's loop that was most of its cost).
    const int64_t n_cons = N, n_heads = A, n_obs = DC;
    const int32_t* const lim = lim32.data();
    const int32_t* const who_pattern = obs_who.data();
    const float* const scale_pattern = obs_scale.data();
    const float* const theta_pattern = obs_theta.data();
    const T* const theta_j = theta;
    T* const obs_cons = obs_c;
    const T k_util = one_minus_eta;
    const int64_t n_firms = F, stride = NP;
    T* const scale_p = scale.data();
    T* const hours_p = h_s.data();
    T* const wemp_p = wemp.data();
    int32_t* const employer_p = employer.data();
    bool bad = false;
    for (int64_t e = begin; e < end; ++e) {
      const T* p = price + e * F;
      const T* w = wage + e * F;
      const T* y = stock + e * F;
      const T* B = budget + e * N;
      // consumption [F, N], firm-major like step.py, built in a cache-resident scratch and copied out
      // once (about 3% faster than building it in the output, which is fresh memory every call)
      T* cons = cons_scratch.data();
      T* h = hours + e * N;
      T* lab = labour + e * F;
      // 1 consumers scale demand to their budget. Every index of this env's [N, F + 2] block is
      // checked against its head's limit before stage 2 (an index out of range stops the chunk and
      // the call raises before any output is returned; until then indices only select registers).
      const I* blk = act_c + e * N * A;
      if (e + 1 < end) {  // the next env's action block, fetched an env ahead (read first, often cold:
                          // 2% faster on 1 thread, 8% on 2; prefetching the outputs for writing was slower)
        const char* nxt = reinterpret_cast<const char*>(blk + N * A);
        for (int64_t b = 0; b < static_cast<int64_t>(N * A * sizeof(I)); b += 64) __builtin_prefetch(nxt + b, 0, 3);
      }
      bool ingested = false;
#if defined(__AVX2__) && defined(__FMA__)
      // this env's wages in two registers when there are at most 16 firms (a gather per 8
      // consumers was about 5% of the step); masked loads read nothing past the row
      const bool wage_regs = std::is_same_v<T, float> && n_firms <= 16;
      __m256 wage_lo = _mm256_setzero_ps(), wage_hi = _mm256_setzero_ps();
      if constexpr (std::is_same_v<T, float>) {
        if (wage_regs) {
          const __m256i wlane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
          wage_lo = _mm256_maskload_ps(w, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_firms)), wlane));
          wage_hi = _mm256_maskload_ps(w + 8, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n_firms) - 8), wlane));
        }
      }
      const __m256i lim_employer = _mm256_set1_epi32(static_cast<int>(n_firms - 1));
      // one head of consumers j0 .. j0 + 7 (both float32 readers): demand into the firm-major scratch
      // with its cost summed, hours, or employer and wage (the index clamped: the gather reads in
      // bounds even before a bad index is reported)
      auto use_head = [&](int64_t head, __m256i idx, __m256 live, int64_t j0, __m256& cost) {
        if constexpr (!std::is_same_v<T, float>) {
          return;  // float32 only (the callers are)
        } else if (head < n_firms) {
          const __m256 d = _mm256_and_ps(lookup16(demand16.lo, demand16.hi, idx), live);
          _mm256_storeu_ps(cons + head * stride + j0, d);
          cost = _mm256_fmadd_ps(d, _mm256_set1_ps(p[head]), cost);
        } else if (head == n_firms) {
          _mm256_storeu_ps(hours_p + j0, lookup16(hours16.lo, hours16.hi, idx));
        } else {
          const __m256i safe = _mm256_min_epu32(idx, lim_employer);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(employer_p + j0), safe);
          _mm256_storeu_ps(wemp_p + j0, wage_regs ? lookup16(wage_lo, wage_hi, safe) : _mm256_i32gather_ps(w, safe, 4));
        }
      };
      if constexpr (std::is_same_v<T, float> && sizeof(I) == 1) {
        if (byte_ingest) {
          // uint8 indices, at most 16 heads: 8 consumers' rows are transposed as bytes (16-byte
          // loads, three rounds of unpacks), each head widened to int32 and checked against its
          // limit as it is looked up; an env with an index out of range stops before its stage 2
          const uint8_t* bytes = reinterpret_cast<const uint8_t*>(blk);
          const __m256i lim_demand = _mm256_set1_epi32(static_cast<int>(n_demand - 1)),
                        lim_hours = _mm256_set1_epi32(static_cast<int>(n_hours - 1));
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
              use_head(head, idx, live, j0, cost);
            }
            _mm256_storeu_ps(scale_p + j0, cost);
          }
          if (!_mm256_testz_si256(over, over)) { bad = true; break; }
          std::memcpy(h, hours_p, n_cons * sizeof(T));
          ingested = true;
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        if (fast_lookup && !ingested) {
          // (a) the block as int32 in a zero-padded scratch, checked on the way
          int32_t* xi = xi_s.data();
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
          for (; k < N * A; ++k) {
            const uint64_t u = static_cast<uint64_t>(static_cast<U>(blk[k]));
            over_s |= static_cast<uint32_t>(u > static_cast<uint64_t>(lim32[k]));
            xi[k] = static_cast<int32_t>(u);
          }
          if (over_s || !_mm256_testz_si256(over, over)) { bad = true; break; }
          // (b) 8 consumers x 8 heads at a time, transposed in registers into the firm-major
          // scratch, looked up in registers, the cost summed on the way
          for (int64_t j0 = 0; j0 < N; j0 += 8) {
            const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(j0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(N)), lane));
            __m256 cost = _mm256_setzero_ps();
            for (int64_t h0 = 0; h0 < A; h0 += 8) {
              __m256 r[8];
              for (int l = 0; l < 8; ++l) r[l] = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + (j0 + l) * A + h0)));
              transpose8(r);
              const int64_t heads = std::min<int64_t>(8, A - h0);
              for (int64_t m = 0; m < heads; ++m) use_head(h0 + m, _mm256_castps_si256(r[m]), live, j0, cost);
            }
            _mm256_storeu_ps(scale.data() + j0, cost);
          }
          std::memcpy(h, h_s.data(), N * sizeof(T));
          ingested = true;
        }
      }
#endif
      if (!ingested) {  // float64, grids over 16 values, or no AVX2
        uint32_t over = 0;
#pragma omp simd reduction(| : over)
        for (int64_t k = 0; k < N * A; ++k) {
          over |= static_cast<uint32_t>(static_cast<uint64_t>(static_cast<U>(blk[k])) > static_cast<uint64_t>(lim32[k]));
        }
        if (over) { bad = true; break; }
        for (int64_t j = 0; j < N; ++j) {
          const I* a = act_c + (e * N + j) * A;
          for (int64_t i = 0; i < F; ++i) cons[i * NP + j] = demand_grid[a[i]];
          h[j] = hours_grid[a[F]];
          employer[j] = static_cast<int32_t>(a[F + 1]);
          wemp[j] = w[a[F + 1]];
        }
        for (int64_t j = 0; j < NP; ++j) scale[j] = T(0);  // cost, until the next loop turns it into the scale
        for (int64_t i = 0; i < F; ++i) {
          const T* row = cons + i * NP;
          const T pi = p[i];
#pragma omp simd
          for (int64_t j = 0; j < NP; ++j) scale[j] += row[j] * pi;
        }
      }
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) {
        const T cost = scale[j], b = B[j];
        const bool over = (cost > T(0)) && (cost > b);
        scale[j] = over ? std::max(b, T(0)) / cost : T(1);
      }
      // 2 total demand and hours per firm
      for (int64_t i = 0; i < F; ++i) {
        T* row = cons + i * NP;
        T s = T(0);
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < NP; ++j) {
          row[j] *= scale[j];
          s += row[j];
        }
        total[i] = s;
      }
      // hours per firm, four interleaved partial sums so that repeated employers do not serialise
      for (int64_t q = 0; q < 4 * F; ++q) lab4[q] = T(0);
      for (int64_t j = 0; j < N; ++j) lab4[(j & 3) * F + employer[j]] += h[j];
      for (int64_t i = 0; i < F; ++i) lab[i] = (lab4[i] + lab4[F + i]) + (lab4[2 * F + i] + lab4[3 * F + i]);
      // 3 rationing
      T* sd = sold + e * F;
      for (int64_t i = 0; i < F; ++i) {
        const bool r = (total[i] > T(0)) && (total[i] > y[i]);
        ration[i] = r ? y[i] / total[i] : T(1);
        sd[i] = r ? y[i] : total[i];
        o_over[e * F + i] = r ? T(1) : T(0);
      }
      // 4 consumers receive goods, utility, income tax
      T* sp = spending + e * N;
      for (int64_t j = 0; j < NP; ++j) { sp_s[j] = T(0); usum[j] = T(0); }
      bool received = false;
#if defined(__AVX2__) && defined(__FMA__)
      if constexpr (std::is_same_v<T, float>) {
        if (pow_split.polynomial) {
          // one pass per firm row: rationed consumption (stored once, final), spending, and
          // (c + 1)^(1 - eta) summed into the utility, kRowChains vectors at a time in registers
          for (int64_t i = 0; i < F; ++i) {
            receive_row<kRowChains>(cons + i * NP, consumed + (e * F + i) * N, N, NP, ration[i], p[i],
                                    pow_split.f, pow_split.f_log2e, pow_split.times_x, sp_s.data(), usum.data());
          }
          received = true;
        }
      }
#endif
      if (!received) {
        for (int64_t i = 0; i < F; ++i) {
          T* row = cons + i * NP;
          const T r = ration[i], pi = p[i];
#pragma omp simd
          for (int64_t j = 0; j < NP; ++j) {
            row[j] *= r;
            sp_s[j] += row[j] * pi;
          }
          std::memcpy(consumed + (e * F + i) * N, row, N * sizeof(T));  // consumption is final here
        }
        // (c + 1)^(1 - eta) of the whole [F, NP] block at once (a rationed-out good has c = 0 and
        // gives exactly 1)
        power_all(cons, one_minus_eta, pw.data(), F * NP);
        for (int64_t i = 0; i < F; ++i) {
          const T* row = pw.data() + i * NP;
#pragma omp simd
          for (int64_t j = 0; j < NP; ++j) usum[j] += row[j];
        }
      }
      std::memcpy(sp, sp_s.data(), N * sizeof(T));
      const T tf = theta_factor[e];
      const T tau_inc = income_tax[e];
      const bool quadratic = fl[kLabourQuadratic] != 0;
      T* cr = c_reward + e * N;
      T* lie = li + e * N;
      T* cb = o_cb + e * N;
      T itax_sum = T(0), reward_sum = T(0);
      const T fF = static_cast<T>(F);
      // vectorised now that it reads locals only (the sums' order is that of 8 lanes: a scalar loop
      // of the captures was about 5% of the step)
      const T* const us = usum.data();
      const T* const we = wemp.data();
      const T* const hj = h;
      if (quadratic) {
#pragma omp simd reduction(+ : itax_sum, reward_sum)
        for (int64_t j = 0; j < n_cons; ++j) {
          const T c = (us[j] - fF) / k_util - T(0.5) * (theta_j[j] * tf) * (hj[j] * hj[j]), l = we[j] * hj[j];
          cr[j] = c;
          lie[j] = l;
          itax_sum += tau_inc * l;
          reward_sum += c;
        }
      } else {
#pragma omp simd reduction(+ : itax_sum, reward_sum)
        for (int64_t j = 0; j < n_cons; ++j) {
          const T c = (us[j] - fF) / k_util - T(0.5) * (theta_j[j] * tf) * hj[j], l = we[j] * hj[j];
          cr[j] = c;
          lie[j] = l;
          itax_sum += tau_inc * l;
          reward_sum += c;
        }
      }
      // 5 exports; 6 firms
      const T tau_corp = corporate_tax[e];
      const T tfp = productivity * std::exp(log_tfp[e]);
      T ctax_sum = T(0), firm_reward_sum = T(0);
      {  // locals only: the captures were reloaded after every store (with the loop below, 3% of the step)
        const bool open = fl[kOpen] != 0, strict = fl[kExportStrict] != 0, from_income = fl[kInvestIncome] != 0;
        const T px = p_export, qx = q_export, frac_inv = inv_frac;
        const T *const pi_ = p, *const wi_ = w, *const yi_ = y, *const sdi = sd, *const labi = lab,
                *const fbi = firm_budget + e * F;
        T *const exo = exported + e * F, *const revo = revenue + e * F, *const wbo = wage_bill + e * F,
          *const invo = investment + e * F, *const pfo = profit + e * F, *const fro = f_reward + e * F,
          *const cpo = corp_paid.data();
#pragma omp simd reduction(+ : ctax_sum, firm_reward_sum)
        for (int64_t i = 0; i < n_firms; ++i) {
          T ex = T(0);
          if (open) {
            const bool eligible = strict ? pi_[i] > px : pi_[i] >= px;
            const T leftover = std::max(yi_[i] - sdi[i], T(0));
            ex = eligible ? std::min(leftover, qx) : T(0);
          }
          const T rev = (sdi[i] + ex) * pi_[i], wb = labi[i] * wi_[i];
          const T gross = rev - wb;
          const T inv = std::max(frac_inv * (from_income ? gross : fbi[i]), T(0));
          const T prof = gross - inv;
          const T paid = tau_corp * std::max(prof, T(0));
          const T fr = prof - paid;
          exo[i] = ex;
          revo[i] = rev;
          wbo[i] = wb;
          invo[i] = inv;
          pfo[i] = prof;
          cpo[i] = paid;
          fro[i] = fr;
          ctax_sum += paid;
          firm_reward_sum += fr;
        }
      }
      T* pr = produced + e * F;
      bool produced_fast = false;
      if constexpr (std::is_same_v<T, float>) {
        // production K^(1 - a) L^a = K 2^(a log2(L / K)) in double, vectorised over firms (two powf
        // calls per firm were about 6% of the step); no labour makes nothing (a > 0). For finite
        // float32 K > 0 and L > 0, L / K and its log2 stay well inside double's range; the loop
        // below redoes the rest with the C library.
#pragma omp simd
        for (int64_t i = 0; i < F; ++i) {
          const double k = static_cast<double>(capital[e * F + i]), l = static_cast<double>(lab[i]);
          const double ratio = l > 0.0 ? l / k : 1.0;
          const double y = k * exp2_moderate(static_cast<double>(alpha[i]) * log2_normal(ratio));
          pr[i] = static_cast<T>(l > 0.0 ? static_cast<double>(tfp) * y : 0.0);
        }
        produced_fast = true;
      }
      for (int64_t i = 0; i < F; ++i) {  // zero capital, or a hand-made state's negative or non-finite values
        const T k = capital[e * F + i], l = lab[i];
        if (!produced_fast || !(k > T(0) && k <= std::numeric_limits<T>::max() && l >= T(0) &&
                                l <= std::numeric_limits<T>::max())) {
          pr[i] = tfp * std::pow(k, T(1) - alpha[i]) * std::pow(l, alpha[i]);
        }
      }
      // 7 time; 8 lump sum; welfare
      const T t_next = tt[e] + T(1);
      itax_total[e] = itax_sum;
      ctax_total[e] = ctax_sum;
      taxes[e] = itax_sum + ctax_sum;
      lump[e] = taxes[e] / n_consumers;
      welfare[e] = fl[kWelfareTotal] ? reward_sum + fww * firm_reward_sum : reward_sum;
      // 9 next tax rates; 10 budgets, capital, prices, stock
      int64_t g0 = act_g[e * 2], g1 = act_g[e * 2 + 1];
      if (g0 < 0 || g0 >= n_tax) { bad = true; g0 = 0; }
      if (g1 < 0 || g1 >= n_tax) { bad = true; g1 = 0; }
      o_itax[e] = tax_grid[g0];
      o_ctax[e] = tax_grid[g1];
      o_t[e] = t_next;
      o_tfp[e] = fl[kTfpOn] ? tfp_rho * log_tfp[e] + tfp_sigma * (has_noise ? noise[e] : T(0)) : log_tfp[e];
      done[e] = t_next >= episode_length;
      const T lump_e = lump[e];
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) cb[j] = B[j] + (((eps - sp[j]) + lie[j]) - tau_inc * lie[j]) + lump_e;
      if (interest != 0.0) {
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) cb[j] = cb[j] > T(0) ? cb[j] * growth : cb[j];
      }
      {  // locals only (as above)
        const bool grows = interest != 0.0, depreciates = dep != 0.0;
        const T g_ = growth, keep_ = keep;
        const T *const fbi = firm_budget + e * F, *const fri = f_reward + e * F, *const ki = capital + e * F,
                *const invi = investment + e * F, *const exi = exported + e * F, *const pri = produced + e * F,
                *const yi_ = y, *const sdi = sd, *const pgrid = price_grid, *const wgrid = wage_grid;
        const I* const af = act_f + e * F * 2;
        const int64_t np_ = n_price, nw_ = n_wage;
        T *const fbo = o_fb + e * F, *const ko = o_capital + e * F, *const po = o_price + e * F,
          *const wo = o_wage + e * F, *const so = o_stock + e * F;
        for (int64_t i = 0; i < n_firms; ++i) {
          T v = fbi[i] + fri[i];
          if (grows) v = v > T(0) ? v * g_ : v;
          fbo[i] = v;
          ko[i] = depreciates ? keep_ * ki[i] + invi[i] : ki[i] + invi[i];
          int64_t kp = af[i * 2], kw = af[i * 2 + 1];
          if (kp < 0 || kp >= np_) { bad = true; kp = 0; }
          if (kw < 0 || kw >= nw_) { bad = true; kw = 0; }
          po[i] = pgrid[kp];
          wo[i] = wgrid[kw];
          so[i] = yi_[i] - sdi[i] - exi[i] + pri[i];
        }
      }
      // observations of the next state (observe.py)
      T* g = obs_g + e * G;
      int64_t q = 0;
      for (int64_t i = 0; i < F; ++i) g[q++] = o_price[e * F + i] / price_scale;
      for (int64_t i = 0; i < F; ++i) g[q++] = o_wage[e * F + i] / wage_scale;
      for (int64_t i = 0; i < F; ++i) {
        const T v = o_stock[e * F + i];
        if (digits) {
          for (int64_t d = 0; d < D; ++d) { const T u = digit_scale[d] * v; g[q++] = u - std::floor(u); }
        } else {
          g[q++] = v;
        }
      }
      for (int64_t i = 0; i < F; ++i) g[q++] = o_over[e * F + i];
      g[q++] = o_itax[e];
      g[q++] = o_ctax[e];
      g[q++] = t_next / episode_length;
      int64_t j_obs = 0;
#if defined(__AVX2__) && defined(__FMA__)
      if constexpr (std::is_same_v<T, float>) {
        if (digits) {
          // 8 consumers' rows are 8 x DC consecutive floats, i.e. DC whole vectors: lane l of vector
          // k is consumer (8k + l) / DC's feature (8k + l) % DC, fetched by a permute
          const __m256 tf8 = _mm256_set1_ps(tf), ts8 = _mm256_set1_ps(theta_scale);
          const float* const cbj = cb;
          float* const oc0 = obs_cons + e * n_cons * n_obs;
          for (; j_obs + 8 <= n_cons; j_obs += 8) {
            const __m256 vb = _mm256_loadu_ps(cbj + j_obs);
            const __m256 vt = _mm256_div_ps(_mm256_mul_ps(_mm256_loadu_ps(theta_j + j_obs), tf8), ts8);
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
        T* oc = obs_c + (e * N + j) * DC;
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
        T* of = obs_f + (e * F + i) * DF;
        const T v = o_fb[e * F + i];
        if (digits) {
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) { const T u = digit_scale[d] * v; of[d] = u - std::floor(u); }
        } else {
          of[0] = v;
        }
        of[DB] = o_capital[e * F + i] / capital_scale;
        of[DB + 1] = alpha[i];
        for (int64_t k = 0; k < F; ++k) of[DB + 2 + k] = k == i ? T(1) : T(0);
      }
    }
    if (bad) bad_action.store(true);
  });
  TORCH_CHECK(!bad_action.load(),
              "an action index is out of range; step with validate=True to name the agent and head");
  return {n_price_t, n_wage_t, n_stock_t, n_over_t, n_capital_t, n_fb_t, n_cb_t, n_itax_t, n_ctax_t,
          n_t_t, n_tfp_t,
          consumed_t, spending_t, li_t, hours_t, sold_t, exported_t, produced_t, labour_t, revenue_t,
          wage_bill_t, investment_t, profit_t, itax_total_t, ctax_total_t, taxes_t, lump_t,
          c_reward_t, f_reward_t, welfare_t, done_t, obs_g_t, obs_c_t, obs_f_t};
}

std::vector<at::Tensor> step(std::vector<at::Tensor> in, const std::vector<double>& scalars,
                             const std::vector<int64_t>& flags, OutputPool* pool) {
  TORCH_CHECK(in.size() == 23, "fused step: expected 23 tensors, got ", in.size());
  TORCH_CHECK(scalars.size() == kNumScalars, "fused step: expected ", int(kNumScalars), " scalars");
  TORCH_CHECK(flags.size() == kNumFlags, "fused step: expected ", int(kNumFlags), " flags");
  const auto dtype = in[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "fused step: dtype must be float32 or float64");
  // indices are read as uint8, int32 or int64 when all three action tensors share that dtype;
  // anything else is widened to int64 (never narrowed: 261 must not become a valid 5)
  const auto c = in[19].scalar_type();
  const bool shared = in[20].scalar_type() == c && in[21].scalar_type() == c;
  const auto index = shared && (c == at::kByte || c == at::kInt) ? c : at::kLong;
  for (size_t k = 0; k < in.size(); ++k) {
    TORCH_CHECK(in[k].device().is_cpu(), "fused step: input ", k, " must be a CPU tensor");
    const bool action = k >= 19 && k <= 21;
    if (action && in[k].scalar_type() != index && at::isIntegralType(in[k].scalar_type(), false)) {
      in[k] = in[k].to(index);
    }
    const auto want = action ? index : dtype;
    TORCH_CHECK(in[k].scalar_type() == want, "fused step: input ", k, " has dtype ", in[k].scalar_type(),
                ", expected ", want);
    if (!in[k].is_contiguous()) in[k] = in[k].contiguous();
  }
  const bool f64 = dtype == at::kDouble;
  if (index == at::kByte) return f64 ? step_impl<double, uint8_t>(in, scalars, flags, pool) : step_impl<float, uint8_t>(in, scalars, flags, pool);
  if (index == at::kInt) return f64 ? step_impl<double, int32_t>(in, scalars, flags, pool) : step_impl<float, int32_t>(in, scalars, flags, pool);
  return f64 ? step_impl<double, int64_t>(in, scalars, flags, pool) : step_impl<float, int64_t>(in, scalars, flags, pool);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<OutputPool>(m, "OutputPool", "Recycled output buffers of one economy (fused.py)")
      .def(pybind11::init<>())
      .def("__len__", &OutputPool::size);
  m.def("step", &step, "One fused economy step on CPU (see rbc_ray/economy/fused.py)", pybind11::arg("inputs"),
        pybind11::arg("scalars"), pybind11::arg("flags"), pybind11::arg("pool") = nullptr);
}
