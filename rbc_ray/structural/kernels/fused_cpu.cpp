// SRL rollouts fused per simulated path, for CPU (rbc_ray/structural/fused.py loads and wraps it).
//
// Same maths and order of events as the torch rollouts in huggett.py and krusell_smith.py, which stay
// the definition (and the GPU path); tests hold the objective and its gradient to torch autograd.
// For HANK the households' whole rollout is here (hank_forward / hank_backward, period-major, see
// there), and the clearing schedule and period step that `HANK.equilibrium` uses for Euler errors;
// the firm's profit stays in torch.
// Why it exists: on a 2-core CPU a torch period is ~100 small ops over [N, J] tensors, each a fresh
// allocation and a memory pass. Here every path is an independent economy (its own histogram, its
// own clearing price), so one thread runs a path through all T periods with g, d and the Young
// scratch in L1; paths run in parallel on torch's intra-op threads.
//
// Backward is the exact adjoint of the forward (what autograd would compute), written by hand:
// with lambda_t = dL/dd_t (a value function), per period and state j
//   lambda_t[j]  = beta^t u_j + (1 - w_j) V[lo_j, y_j] + w_j V[lo_j + 1, y_j],  V = lambda_{t+1} P_y^T
//   dL/db'_j     = d_t[j] (beta^t u'(c_j) dc/db' + (V[lo+1] - V[lo]) dw/db')
// and dL/db' is accumulated into the policy-table entries the action was interpolated from.
// Prices and the clearing histogram g are detached (spec: prices are taken as given).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;

// Histogram tails underflow into subnormal floats, whose arithmetic is ~100x slower on x86: flush
// them to zero inside the kernels' threads (values below 1e-38 in float32; restored on exit).
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Utility and marginal utility of CRRA, fast paths for the integer cases of the spec (1, 2, 3).
template <typename T>
inline void crra_u(T c, double crra, T& u, T& mu) {
  if (crra == 1.0) {
    u = std::log(c);
    mu = T(1) / c;
  } else if (crra == 2.0) {
    const T inv = T(1) / c;
    u = -inv;
    mu = inv * inv;
  } else if (crra == 3.0) {
    const T inv = T(1) / c;
    mu = inv * inv * inv;
    u = -T(0.5) * inv * inv;
  } else {
    mu = std::pow(c, T(-crra));
    u = c * mu / T(1.0 - crra);
  }
}

// Bracket of b on the asset grid. Bucket k = floor((b - bmin) / h) of a uniform look-up table, h
// at most half the smallest grid step, stores the last node at or below its left edge less a
// quarter bucket (fused.AssetLookup): the bracket is that node or the next, whichever b has
// reached, so one comparison decides, exact whatever the rounding of the bucket index. The
// derived tables below are built once per kernel call (make_locator); for float they are also
// packed in pairs, so that an AVX2 gather of 64-bit entries fetches two values at once.
template <typename T>
struct Locator {
  const T* grid;
  int64_t nb, nlut;
  T bmin, inv_h;
  const int32_t* node;              // per bucket: its node (fused.AssetLookup's table)
  std::vector<T> next;              // per bucket: grid[node + 1], the comparison that decides
  std::vector<T> left, step;        // per node l < nb - 1: grid[l], grid[l + 1] - grid[l]
  std::vector<uint64_t> node_next;  // float: (node, next) per bucket
  std::vector<uint64_t> left_step;  // float: (left, step) per node
};

inline uint64_t pack2(uint32_t lo_bits, uint32_t hi_bits) {
  return static_cast<uint64_t>(lo_bits) | (static_cast<uint64_t>(hi_bits) << 32);
}

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

#if defined(__AVX2__)
// lottery_row for 8 floats at a time: four 64-bit gathers of 4 (bucket -> node and next value;
// node -> left value and step) where a gather per value took ten 8-wide gathers. Indices are
// permuted to (0 1 4 5 | 2 3 6 7) so that one in-lane shuffle of the two gathers' halves puts the
// lanes back in order. Same operations as the scalar loop, so the same bits. Returns the lanes done.
template <bool WithDw>
inline int64_t lottery_avx2(const Locator<float>& loc, const float* __restrict bn, int64_t J,
                            int32_t* __restrict lo, float* __restrict w, float* __restrict dw) {
  const __m256 b0 = _mm256_set1_ps(loc.grid[0]), b1 = _mm256_set1_ps(loc.grid[loc.nb - 1]);
  const __m256 bmin = _mm256_set1_ps(loc.bmin), inv_h = _mm256_set1_ps(loc.inv_h);
  const __m256 kmax = _mm256_set1_ps(static_cast<float>(loc.nlut - 1));
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256i top = _mm256_set1_epi32(static_cast<int32_t>(loc.nb - 2));
  const __m256i perm = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  const auto* nn = reinterpret_cast<const long long*>(loc.node_next.data());
  const auto* ls = reinterpret_cast<const long long*>(loc.left_step.data());
  int64_t j = 0;
  for (; j + 8 <= J; j += 8) {
    const __m256 b = _mm256_loadu_ps(bn + j);
    const __m256 bc = _mm256_min_ps(_mm256_max_ps(b, b0), b1);
    const __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_sub_ps(bc, bmin), inv_h), zero), kmax);
    const __m256i k = _mm256_permutevar8x32_epi32(_mm256_cvttps_epi32(x), perm);
    const __m256 qa = _mm256_castsi256_ps(_mm256_i32gather_epi64(nn, _mm256_castsi256_si128(k), 8));
    const __m256 qb = _mm256_castsi256_ps(_mm256_i32gather_epi64(nn, _mm256_extracti128_si256(k, 1), 8));
    const __m256i node = _mm256_castps_si256(_mm256_shuffle_ps(qa, qb, 0x88));
    const __m256 next = _mm256_shuffle_ps(qa, qb, 0xDD);
    // the mask is -1 where b has reached the next node
    __m256i l = _mm256_sub_epi32(node, _mm256_castps_si256(_mm256_cmp_ps(bc, next, _CMP_GE_OQ)));
    l = _mm256_min_epi32(l, top);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + j), l);
    const __m256i li = _mm256_permutevar8x32_epi32(l, perm);
    const __m256 pa = _mm256_castsi256_ps(_mm256_i32gather_epi64(ls, _mm256_castsi256_si128(li), 8));
    const __m256 pb = _mm256_castsi256_ps(_mm256_i32gather_epi64(ls, _mm256_extracti128_si256(li, 1), 8));
    const __m256 left = _mm256_shuffle_ps(pa, pb, 0x88), h = _mm256_shuffle_ps(pa, pb, 0xDD);
    const __m256 raw = _mm256_div_ps(_mm256_sub_ps(bc, left), h);
    _mm256_storeu_ps(w + j, _mm256_min_ps(_mm256_max_ps(raw, zero), one));
    if constexpr (WithDw) {
      const __m256 inside = _mm256_and_ps(
          _mm256_and_ps(_mm256_cmp_ps(b, b0, _CMP_GE_OQ), _mm256_cmp_ps(b, b1, _CMP_LE_OQ)),
          _mm256_and_ps(_mm256_cmp_ps(raw, zero, _CMP_GE_OQ), _mm256_cmp_ps(raw, one, _CMP_LE_OQ)));
      _mm256_storeu_ps(dw + j, _mm256_and_ps(inside, _mm256_div_ps(one, h)));
    }
  }
  return j;
}
#endif

// Young's lottery for a whole row: lo[j], the weight w[j] on lo+1 and (WithDw) d w / d b'.
template <typename T, bool WithDw>
inline void lottery_row(const Locator<T>& loc, const T* __restrict bn, int64_t J, int32_t* __restrict lo,
                        T* __restrict w, T* __restrict dw) {
  int64_t j0 = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) j0 = lottery_avx2<WithDw>(loc, bn, J, lo, w, dw);
#endif
  const int32_t* __restrict node = loc.node;
  const T* __restrict next = loc.next.data();
  const T* __restrict left_ = loc.left.data();
  const T* __restrict step = loc.step.data();
  const T b0 = loc.grid[0], b1 = loc.grid[loc.nb - 1], bmin = loc.bmin, inv_h = loc.inv_h;
  const int32_t top = static_cast<int32_t>(loc.nb - 2);
  const T kmax = static_cast<T>(loc.nlut - 1);
#pragma omp simd
  for (int64_t j = j0; j < J; ++j) {
    const T b = bn[j];
    const T bc = std::min(std::max(b, b0), b1);
    const T x = std::min(std::max((bc - bmin) * inv_h, T(0)), kmax);
    const int32_t k = static_cast<int32_t>(x);
    const int32_t l = std::min(node[k] + static_cast<int32_t>(bc >= next[k]), top);
    const T h = step[l];
    const T raw = (bc - left_[l]) / h;
    lo[j] = l;
    w[j] = std::min(std::max(raw, T(0)), T(1));
    if constexpr (WithDw) {
      const bool inside = (b >= b0) & (b <= b1) & (raw >= T(0)) & (raw <= T(1));
      dw[j] = inside ? T(1) / h : T(0);
    }
  }
}

// Utility u(max(c, c_min)) (Clamp) or u(c) of a row, and (WithMu) marginal utility, zero where
// c < c_min as clamp's gradient. Fast paths for the spec's integer CRRA values 1, 2, 3.
template <typename T, bool Clamp, bool WithMu, int Crra>
inline void utility_row_k(const T* __restrict c, int64_t J, double crra, T cmin, T* __restrict u,
                          T* __restrict mu) {
#pragma omp simd
  for (int64_t j = 0; j < J; ++j) {
    const T cj = c[j];
    const T cc = Clamp ? std::max(cj, cmin) : cj;
    T uu, m;
    if constexpr (Crra == 1) {
      uu = std::log(cc);
      m = T(1) / cc;
    } else if constexpr (Crra == 2) {
      const T inv = T(1) / cc;
      uu = -inv;
      m = inv * inv;
    } else if constexpr (Crra == 3) {
      const T inv = T(1) / cc;
      uu = T(-0.5) * inv * inv;
      m = inv * inv * inv;
    } else {
      m = std::pow(cc, T(-crra));
      uu = cc * m / T(1.0 - crra);
    }
    u[j] = uu;
    if constexpr (WithMu) mu[j] = (Clamp && cj < cmin) ? T(0) : m;
  }
}

template <typename T, bool Clamp, bool WithMu>
inline void utility_row(const T* c, int64_t J, double crra, T cmin, T* u, T* mu) {
  if (crra == 1.0) utility_row_k<T, Clamp, WithMu, 1>(c, J, crra, cmin, u, mu);
  else if (crra == 2.0) utility_row_k<T, Clamp, WithMu, 2>(c, J, crra, cmin, u, mu);
  else if (crra == 3.0) utility_row_k<T, Clamp, WithMu, 3>(c, J, crra, cmin, u, mu);
  else utility_row_k<T, Clamp, WithMu, 0>(c, J, crra, cmin, u, mu);
}

// Dot product accumulated in double. For float with AVX2, four running sums of four lanes: a
// single vector sum made each add wait for the one before (a tenth of Huggett's forward). A
// float product is exact in double, so the fused multiply-add rounds as mul-then-add would.
template <typename T>
inline double dot(const T* __restrict a, const T* __restrict b, int64_t J) {
  double acc = 0.0;
  int64_t j0 = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), s2 = _mm256_setzero_pd(),
            s3 = _mm256_setzero_pd();
    for (; j0 + 16 <= J; j0 += 16) {
      const float *x = a + j0, *y = b + j0;
      s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x)), _mm256_cvtps_pd(_mm_loadu_ps(y)), s0);
      s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + 4)), _mm256_cvtps_pd(_mm_loadu_ps(y + 4)), s1);
      s2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + 8)), _mm256_cvtps_pd(_mm_loadu_ps(y + 8)), s2);
      s3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + 12)), _mm256_cvtps_pd(_mm_loadu_ps(y + 12)), s3);
    }
    const __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    acc = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }
#endif
#pragma omp simd reduction(+ : acc)
  for (int64_t j = j0; j < J; ++j) acc += static_cast<double>(a[j]) * static_cast<double>(b[j]);
  return acc;
}

// Screening dot product for the clearing schedule: float, fused multiply-adds, 8 lanes. The two
// nodes that bracket the clearing price are recomputed exactly (dot, in double) before interpolating.
template <typename T>
inline double dot_fast(const T* __restrict a, const T* __restrict b, int64_t J) {
  if constexpr (std::is_same_v<T, double>) {
    return dot<T>(a, b, J);
  } else {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < J; ++j) acc = std::fma(a[j], b[j], acc);
    return static_cast<double>(acc);
  }
}

// Screening values S[k] = dot_fast(B_k, g) of nodes [k0, k0 + n) (rows of Bz, stride J), four
// nodes per pass over g when n = 4: four independent accumulator chains instead of one, so the
// fused multiply-adds are not waiting on each other's latency. clear_schedule takes the nodes in
// the same blocks (fours from node 0, then ones) however far it screens, so a node's value is fixed.
template <typename T>
inline void screen_block(const T* __restrict Bz, int64_t k0, int64_t n, const T* __restrict g, int64_t J,
                         double* S) {
  if constexpr (!std::is_same_v<T, double>) {
    if (n == 4) {
      const T *b0 = Bz + k0 * J, *b1 = b0 + J, *b2 = b1 + J, *b3 = b2 + J;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
      for (int64_t j = 0; j < J; ++j) {
        const float gj = g[j];
        a0 = std::fma(b0[j], gj, a0);
        a1 = std::fma(b1[j], gj, a1);
        a2 = std::fma(b2[j], gj, a2);
        a3 = std::fma(b3[j], gj, a3);
      }
      S[k0] = a0;
      S[k0 + 1] = a1;
      S[k0 + 2] = a2;
      S[k0 + 3] = a3;
      return;
    }
  }
  for (int64_t k = k0; k < k0 + n; ++k) S[k] = dot_fast<T>(Bz + k * J, g, J);
}

// Block size for the next screened node (fours while they fit, for float).
template <typename T>
inline int64_t screen_step(int64_t done, int64_t K) {
  return (!std::is_same_v<T, double> && done + 4 <= K) ? 4 : 1;
}

// Both histograms moved by the same lottery in one pass. Scalar read-modify-writes, so the cost is
// instructions per state: the spec's three income states get a compile-time stride and the
// pointers are __restrict (otherwise each state reloaded its mass after every store).
template <typename T, int NY>
inline void scatter2_fixed(const T* __restrict m1, const T* __restrict m2, const int32_t* __restrict lo,
                           const T* __restrict w, int64_t nb, int64_t ny, T* __restrict tmp1, T* __restrict tmp2) {
  const int64_t stride = NY > 0 ? NY : ny;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t y = 0; y < stride; ++y) {
      const int64_t j = b * stride + y;
      const int64_t i0 = static_cast<int64_t>(lo[j]) * stride + y;
      const T a = m1[j], c = m2[j], wj = w[j];
      const T hi1 = a * wj, hi2 = c * wj;
      tmp1[i0] += a - hi1;
      tmp1[i0 + stride] += hi1;
      tmp2[i0] += c - hi2;
      tmp2[i0 + stride] += hi2;
    }
  }
}

template <typename T>
inline void scatter2_row(const T* m1, const T* m2, const int32_t* lo, const T* w, int64_t nb, int64_t ny,
                         T* tmp1, T* tmp2) {
  if (ny == 3) scatter2_fixed<T, 3>(m1, m2, lo, w, nb, ny, tmp1, tmp2);
  else scatter2_fixed<T, 0>(m1, m2, lo, w, nb, ny, tmp1, tmp2);
}

// Scatter of a row's mass by the lottery (before the income transition): tmp[lo*ny + y] += m (1-w),
// tmp[(lo+1)*ny + y] += m w.
template <typename T>
inline void scatter_row(const T* m, const int32_t* lo, const T* w, int64_t nb, int64_t ny, T* tmp) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t y = 0; y < ny; ++y) {
      const int64_t j = b * ny + y;
      const int64_t i0 = static_cast<int64_t>(lo[j]) * ny + y;
      const T hi = m[j] * w[j];
      tmp[i0] += m[j] - hi;
      tmp[i0 + ny] += hi;
    }
  }
}

// out[b, y'] = sum_y tmp[b, y] P[y, y'] (the income transition after the asset lottery); the
// spec's three income states get an unrolled, vectorised loop.
template <typename T>
inline void mix_forward(const T* __restrict tmp, const T* __restrict P, int64_t nb, int64_t ny,
                        T* __restrict out) {
  if (ny == 3) {
    const T p00 = P[0], p01 = P[1], p02 = P[2], p10 = P[3], p11 = P[4], p12 = P[5], p20 = P[6], p21 = P[7],
            p22 = P[8];
    int64_t b0 = 0;
#if defined(__AVX2__)
    // float: one asset node per 4-lane step, out[b, :] = a0 P[0, :] + a1 P[1, :] + a2 P[2, :] (same
    // products and order as below). Vectorising across nodes needed a shuffle per stride-3 access;
    // this is a third of the instructions. The 4th lane lands on the next node's first slot, which
    // the next step overwrites, so the last node is left to the scalar loop.
    if constexpr (std::is_same_v<T, float>) {
      const __m128 r0 = _mm_setr_ps(p00, p01, p02, 0.0f), r1 = _mm_setr_ps(p10, p11, p12, 0.0f),
                   r2 = _mm_setr_ps(p20, p21, p22, 0.0f);
      for (; b0 + 1 < nb; ++b0) {
        const float* a = tmp + 3 * b0;
        const __m128 v = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_set1_ps(a[0]), r0), _mm_mul_ps(_mm_set1_ps(a[1]), r1)),
                                    _mm_mul_ps(_mm_set1_ps(a[2]), r2));
        _mm_storeu_ps(out + 3 * b0, v);
      }
    }
#endif
#pragma omp simd
    for (int64_t b = b0; b < nb; ++b) {
      const T a0 = tmp[3 * b], a1 = tmp[3 * b + 1], a2 = tmp[3 * b + 2];
      out[3 * b] = a0 * p00 + a1 * p10 + a2 * p20;
      out[3 * b + 1] = a0 * p01 + a1 * p11 + a2 * p21;
      out[3 * b + 2] = a0 * p02 + a1 * p12 + a2 * p22;
    }
    return;
  }
  for (int64_t b = 0; b < nb; ++b) {
    const T* src = tmp + b * ny;
    T* dst = out + b * ny;
    for (int64_t y2 = 0; y2 < ny; ++y2) {
      T acc = 0;
      for (int64_t y = 0; y < ny; ++y) acc += src[y] * P[y * ny + y2];
      dst[y2] = acc;
    }
  }
}

// V[b, y] = sum_y' P[y, y'] lam[b, y'] (adjoint of mix_forward): mix_forward with P transposed.
template <typename T>
inline void mix_backward(const T* __restrict lam, const T* __restrict P, int64_t nb, int64_t ny,
                         T* __restrict V) {
  T small[64];
  std::vector<T> large(ny * ny > 64 ? ny * ny : 0);
  T* PT = ny * ny > 64 ? large.data() : small;
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t y2 = 0; y2 < ny; ++y2) PT[y2 * ny + y] = P[y * ny + y2];
  mix_forward(lam, PT, nb, ny, V);
}

inline double interpolate(const double* S, int64_t K, double target, int64_t lo);

// Clearing by interpolation on the price grid (market.bracket with extrapolate = 0): the first
// upward crossing of the target, else the end segment nearest it.
inline void bracket(const double* S, int64_t K, double target, int64_t& lo, double& w) {
  int64_t n_below = 0, first = -1;
  for (int64_t k = 0; k < K; ++k) n_below += (S[k] - target) < 0.0;
  for (int64_t k = 0; k + 1 < K; ++k) {
    if ((S[k] - target) < 0.0 && !((S[k + 1] - target) < 0.0)) { first = k; break; }
  }
  lo = first >= 0 ? first : std::min<int64_t>(std::max<int64_t>(n_below - 1, 0), K - 2);
  w = interpolate(S, K, target, lo);
}

// The weight on node lo+1 given the bracket (market.bracket's rules for a target off the schedule).
inline double interpolate(const double* S, int64_t K, double target, int64_t lo) {
  int64_t n_below = 0;
  for (int64_t k = 0; k < K; ++k) n_below += (S[k] - target) < 0.0;
  const double e_lo = S[lo] - target, e_hi = S[lo + 1] - target, denom = e_hi - e_lo;
  double w = denom != 0.0 ? -e_lo / denom : 0.0;
  if (n_below == K) w = std::max(w, 1.0);
  if (n_below == 0) w = std::min(w, 0.0);
  if (!std::isfinite(w)) w = 0.0;
  return std::min(std::max(w, 0.0), 1.0);
}

// Huggett's clearing: the rate bracket (lr, weight wr on lr + 1) where the bond demand schedule
// S[k] = B_k . g crosses the target, by `bracket` on the float screening values with the two
// bracketing nodes then summed exactly (dot, in double) for `interpolate`. The schedule is screened
// only as far up the rate grid as its first upward crossing: with the exact sums still on either
// side of the target, the nodes above cannot change the result (interpolate's end rules need every
// node below or every node above). Otherwise (no crossing, or rounding moved an exact sum across the
// target) every node is screened and the full rules apply: the same result as screening them all.
// `ready(k)` is called before rows [0, k) of Bz are first read (price lags blend them on demand).
struct RowsReady {
  void operator()(int64_t) const {}
};

template <typename T, typename Ready = RowsReady>
inline void clear_schedule(const T* Bz, int64_t K, const T* g, int64_t J, double target, double* S, int64_t& lr,
                           double& wr, const Ready& ready = Ready{}) {
  int64_t done = 0, first = -1;
  const auto screen_through = [&](int64_t upto) {  // nodes [done, upto), in screen_step's blocks
    while (done < upto) {
      const int64_t n = screen_step<T>(done, K);
      ready(done + n);
      screen_block<T>(Bz, done, n, g, J, S);
      done += n;
    }
  };
  for (int64_t k = 0; k + 1 < K && first < 0; ++k) {
    screen_through(k + 2);
    if ((S[k] - target) < 0.0 && !((S[k + 1] - target) < 0.0)) first = k;
  }
  if (first >= 0) {
    const double s_lo = dot<T>(Bz + first * J, g, J), s_hi = dot<T>(Bz + (first + 1) * J, g, J);
    const double e_lo = s_lo - target, e_hi = s_hi - target;
    if (e_lo < 0.0 && !(e_hi < 0.0)) {
      lr = first;
      S[lr] = s_lo;
      S[lr + 1] = s_hi;
      const double denom = e_hi - e_lo;
      double w = denom != 0.0 ? -e_lo / denom : 0.0;
      if (!std::isfinite(w)) w = 0.0;
      wr = std::min(std::max(w, 0.0), 1.0);
      return;
    }
  }
  screen_through(K);
  bracket(S, K, target, lr, wr);
  S[lr] = dot<T>(Bz + lr * J, g, J);
  S[lr + 1] = dot<T>(Bz + (lr + 1) * J, g, J);
  wr = interpolate(S, K, target, lr);
}

// Paths in parallel on torch's intra-op threads, handed out one at a time (dynamic: on a shared
// 2-core machine a static half each leaves one thread idle while the other waits for its core).
// f(n, n + 1) runs each path; thread-local scratch lives inside f.
template <typename F>
inline void parallel_paths(int64_t N, const F& f) {
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, nt, 1, [&](int64_t, int64_t) {
    FlushDenormals ftz;
    for (;;) {
      const int64_t n = next.fetch_add(1);
      if (n >= N) break;
      f(n, n + 1);
    }
  });
}

// The adjoints' gradient, accumulated in a fixed number of path blocks whatever the thread count:
// block k sums paths [k N / K, (k + 1) N / K) in path order, blocks are handed out dynamically and
// added in block order, so the gradient is the same bit for bit on any number of threads and any
// schedule (per-thread accumulators made training differ in the last bits from run to run).
// f(grad, n0, n1) accumulates paths [n0, n1) into grad [M].
constexpr int64_t kGradBlocks = 8;
template <typename T, typename F>
Tensor blocked_gradient(int64_t N, int64_t M, const at::TensorOptions& opts, const F& f) {
  const int64_t K = std::max<int64_t>(1, std::min(N, kGradBlocks));
  Tensor acc = at::zeros({K, M}, opts);
  T* a = acc.data_ptr<T>();
  parallel_paths(K, [&](int64_t k, int64_t) { f(a + k * M, k * N / K, (k + 1) * N / K); });
  Tensor out = at::empty({M}, opts);
  T* o = out.data_ptr<T>();
  at::parallel_for(0, M, 4096, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      T total = a[m];
      for (int64_t k = 1; k < K; ++k) total += a[k * M + m];
      o[m] = total;
    }
  });
  return out;
}

// A gradient accumulator addressed by slab (S consecutive entries: one table row at one price node).
// DenseGrad: every slab of a block's full copy (blocked_gradient). SlabGrad: a slab is zeroed when the
// block first touches it (blocked_gradient_slabs).
template <typename T>
struct DenseGrad {
  T* base;
  int64_t S;
  T* at(int64_t slab) const { return base + slab * S; }
};

template <typename T>
struct SlabGrad {
  T* base;
  uint8_t* seen;
  int64_t S;
  T* at(int64_t slab) const {
    T* p = base + slab * S;
    if (!seen[slab]) {
      std::fill(p, p + S, T(0));
      seen[slab] = 1;
    }
    return p;
  }
};

// blocked_gradient for adjoints that touch few of many slabs (price lags multiply the policy table by
// n_lag^L, and a path visits a few lag nodes): each block zeroes only the slabs it touches, and the
// blocks are added in block order only where touched, so the sums are blocked_gradient's (adding an
// untouched block's zeros changes no bits) without writing and reading kGradBlocks full copies of the
// table. f(acc, n0, n1) accumulates paths [n0, n1) through acc.at(slab) (a SlabGrad).
template <typename T, typename F>
Tensor blocked_gradient_slabs(int64_t N, int64_t n_slabs, int64_t S, const at::TensorOptions& opts, const F& f) {
  const int64_t K = std::max<int64_t>(1, std::min(N, kGradBlocks)), M = n_slabs * S;
  Tensor acc = at::empty({K, M}, opts);  // pages are committed only where a block touches a slab
  std::vector<uint8_t> seen(K * n_slabs, 0);
  T* a = acc.data_ptr<T>();
  parallel_paths(K, [&](int64_t k, int64_t) {
    const SlabGrad<T> g{a + k * M, seen.data() + k * n_slabs, S};
    f(g, k * N / K, (k + 1) * N / K);
  });
  Tensor out = at::empty({M}, opts);
  T* o = out.data_ptr<T>();
  at::parallel_for(0, n_slabs, 256, [&](int64_t s0, int64_t s1) {
    for (int64_t sl = s0; sl < s1; ++sl) {
      T* os = o + sl * S;
      int64_t first = 0;
      while (first < K && !seen[first * n_slabs + sl]) ++first;
      if (first == K) {
        std::fill(os, os + S, T(0));
        continue;
      }
      std::memcpy(os, a + first * M + sl * S, S * sizeof(T));
      for (int64_t k = first + 1; k < K; ++k) {
        if (!seen[k * n_slabs + sl]) continue;
        const T* ak = a + k * M + sl * S;
        for (int64_t i = 0; i < S; ++i) os[i] += ak[i];
      }
    }
  });
  return out;
}

// The adjoint's gradient: blocked_gradient (dense) without lags, blocked_gradient_slabs with them.
// body(acc, n0, n1) takes a DenseGrad or a SlabGrad.
template <typename T, typename F>
Tensor table_gradient(bool sparse, int64_t N, int64_t n_slabs, int64_t S, const at::TensorOptions& opts,
                      const F& body) {
  if (sparse) return blocked_gradient_slabs<T>(N, n_slabs, S, opts, body);
  return blocked_gradient<T>(N, n_slabs * S, opts, [&](T* grad, int64_t n0, int64_t n1) {
    body(DenseGrad<T>{grad, S}, n0, n1);
  });
}

template <typename T>
Locator<T> make_locator(const Tensor& grid, const Tensor& lut, double bmin, double inv_h) {
  TORCH_CHECK(grid.numel() >= 2 && lut.numel() >= 1 && lut.scalar_type() == at::kInt,
              "asset look-up: need a grid of at least 2 nodes and an int32 table");
  const int32_t* t = lut.data_ptr<int32_t>();
  Locator<T> loc{grid.data_ptr<T>(), grid.numel(), lut.numel(), static_cast<T>(bmin), static_cast<T>(inv_h), t};
  const T* g = loc.grid;
  const int64_t nb = loc.nb, nlut = loc.nlut;
  loc.next.resize(nlut);
  for (int64_t k = 0; k < nlut; ++k) {
    TORCH_CHECK(t[k] >= 0 && t[k] <= nb - 2, "asset look-up table entry out of range");
    loc.next[k] = g[t[k] + 1];
  }
  loc.left.resize(nb - 1);
  loc.step.resize(nb - 1);
  for (int64_t l = 0; l + 1 < nb; ++l) {
    loc.left[l] = g[l];
    loc.step[l] = g[l + 1] - g[l];
  }
  if constexpr (std::is_same_v<T, float>) {
    loc.node_next.resize(nlut);
    for (int64_t k = 0; k < nlut; ++k)
      loc.node_next[k] = pack2(static_cast<uint32_t>(loc.node[k]), float_bits(loc.next[k]));
    loc.left_step.resize(nb - 1);
    for (int64_t l = 0; l + 1 < nb; ++l) loc.left_step[l] = pack2(float_bits(loc.left[l]), float_bits(loc.step[l]));
  }
  return loc;
}

// The continuation value at the horizon, V [N, J] (empty: none): its data, or nullptr.
template <typename T>
inline const T* terminal_value(const Tensor& V, int64_t N, int64_t J) {
  if (V.numel() == 0) return nullptr;
  TORCH_CHECK(V.dim() == 2 && V.size(0) == N && V.size(1) == J && V.is_contiguous() && V.device().is_cpu(),
              "terminal value: V must be a contiguous CPU tensor [N, J] (or empty)");
  return V.data_ptr<T>();
}

// The adjoint of d_T: beta^T gobj[n] V_n (the terminal term beta^T d_T . V_n), or 0 without V.
template <typename T>
inline void terminal_adjoint(std::vector<T>& lam, const T* V, double betaT, T go) {
  if (V == nullptr) {
    std::fill(lam.begin(), lam.end(), T(0));
    return;
  }
  const T a = static_cast<T>(betaT * static_cast<double>(go));
  for (size_t j = 0; j < lam.size(); ++j) lam[j] = a * V[j];
}

// The caller's buffer for d_t of every period and path, [T, N, J] (fused.py keeps it between epochs:
// a fresh 100-200 MB allocation per epoch is fresh pages that the OS zeroes on first touch).
inline void check_history(const Tensor& d_hist, int64_t T_, int64_t N, int64_t J, const Tensor& like) {
  TORCH_CHECK(d_hist.dim() == 3 && d_hist.size(0) == T_ && d_hist.size(1) == N && d_hist.size(2) == J &&
                  d_hist.scalar_type() == like.scalar_type() && d_hist.is_contiguous() && d_hist.device().is_cpu(),
              "d_hist must be a contiguous CPU tensor [T, N, J] of the histogram's dtype");
}

// Rate node s of the partial-equilibrium chain as a bracket of the rate grid: lr = the segment's
// lower node, w = the weight on lr + 1 (the last node is the top of the last segment).
inline void node_bracket(int64_t s, int64_t nr, int64_t& lr, double& w) {
  lr = std::min<int64_t>(s, nr - 2);
  w = s == nr - 1 ? 1.0 : 0.0;
}

// When every period's price sits exactly on a grid node (partial-equilibrium Huggett: the rate is
// the exogenous chain's node), the action row is one of nz * nr node rows, the same for every path
// and period. Their utility, marginal utility and lottery are then computed once per call instead of
// once per path and period, by the same row functions (identical values).
template <typename T>
struct NodeRows {
  int64_t J = 0;
  std::vector<T> u, mu, wb, dw;
  std::vector<int32_t> lo;
  std::vector<char> built;
  NodeRows(int64_t count, int64_t J_, bool grad)
      : J(J_), u(count * J_), mu(grad ? count * J_ : 0), wb(count * J_), dw(grad ? count * J_ : 0),
        lo(count * J_), built(count, 0) {}
  // Row k: savings B0 (1 - w) + B1 w at bond price q, cash on hand cz.
  void build(int64_t k, const T* B0, const T* B1, T w, T q, const T* cz, const Locator<T>& loc, double crra,
             T cmin) {
    std::vector<T> bn(J), c(J);
    for (int64_t j = 0; j < J; ++j) {
      bn[j] = B0[j] * (T(1) - w) + B1[j] * w;
      c[j] = cz[j] - bn[j] * q;
    }
    const bool grad = !mu.empty();
    if (grad) {
      utility_row<T, true, true>(c.data(), J, crra, cmin, &u[k * J], &mu[k * J]);
      lottery_row<T, true>(loc, bn.data(), J, &lo[k * J], &wb[k * J], &dw[k * J]);
    } else {
      utility_row<T, true, false>(c.data(), J, crra, cmin, &u[k * J], nullptr);
      lottery_row<T, false>(loc, bn.data(), J, &lo[k * J], &wb[k * J], nullptr);
    }
    built[k] = 1;
  }
};

// Lagged prices in the policy state (lags.py is the definition). lag_grid = (r_min, step, n_lag): the
// lag axes' uniform grid; lags [N, L] (L = 0, 1, 2) the lagged prices a path starts with.
struct LagGrid {
  double lo = 0, step = 1;
  int64_t n = 2, L = 0, M = 1;  // M = n^L lag nodes
};

inline LagGrid lag_grid_of(const Tensor& lags0, const std::vector<double>& v, int64_t N) {
  TORCH_CHECK(v.size() == 3, "lag_grid: (r_min, step, n_lag) expected");
  TORCH_CHECK(lags0.dim() == 2 && lags0.size(0) == N && lags0.size(1) <= 2 && lags0.is_contiguous(),
              "lags: [N, L] contiguous, L <= 2");
  LagGrid lg{v[0], v[1], static_cast<int64_t>(v[2]), lags0.size(1), 1};
  TORCH_CHECK(lg.n >= 2, "lag_grid: n_lag >= 2");
  for (int64_t l = 0; l < lg.L; ++l) lg.M *= lg.n;
  return lg;
}

// Corners of the lag grid around lag[0..L) (lags.lag_corners, same arithmetic in the same order):
// corner c = bits (b_1 .. b_L), b_1 most significant, node m[c], weight wt[c]. Returns 2^L.
template <typename T>
inline int64_t lag_corners(const T* lag, const LagGrid& lg, int64_t* m, T* wt) {
  int64_t lo[2] = {0, 0};
  T a[2] = {T(0), T(0)};
  for (int64_t l = 0; l < lg.L; ++l) {
    T pos = (lag[l] - static_cast<T>(lg.lo)) / static_cast<T>(lg.step);
    pos = pos < T(0) ? T(0) : (pos > T(lg.n - 1) ? T(lg.n - 1) : pos);
    lo[l] = std::min<int64_t>(static_cast<int64_t>(pos), lg.n - 2);
    a[l] = pos - T(lo[l]);
  }
  const int64_t K = int64_t(1) << lg.L;
  for (int64_t c = 0; c < K; ++c) {
    int64_t idx = 0;
    T w = T(1);
    for (int64_t l = 0; l < lg.L; ++l) {
      const int64_t bit = (c >> (lg.L - 1 - l)) & 1;
      idx = idx * lg.n + lo[l] + bit;
      const T wa = bit ? a[l] : T(1) - a[l];
      w = l == 0 ? wa : w * wa;
    }
    m[c] = idx;
    wt[c] = w;
  }
  return K;
}

// The lagged prices of period t of path n: lag l is the price of period t - 1 - l (p [T, N]), or the
// path's initial lag l - t before period 0.
template <typename T>
inline void lags_at(const T* p, const T* lags0, int64_t t, int64_t n, int64_t N, const LagGrid& lg, T* lag) {
  for (int64_t l = 0; l < lg.L; ++l) {
    const int64_t u = t - 1 - l;
    lag[l] = u >= 0 ? p[u * N + n] : lags0[n * lg.L + (l - t)];
  }
}

// ------------------------------------------------------------------------------------------ Huggett
// With lags (L > 0, general equilibrium) B's rows are (z node, lag node), z major: [nz M, nr, J], and each
// period the path's lag corners are blended into a scratch slab [nr, J] that clears the market and acts.
// B [nz, nr, J] savings b' at every node; cash [nz, J]; s_path [T(+1), N] aggregate state per period
// (z node, or r node in partial equilibrium); g0 [N, J]. Returns
//   obj [N] (sum_t beta^t d_t . u_t, plus beta^T d_T . V_n given the terminal value V [N, J]), g_T [N, J],
//   d_hist [T, N, J], zi/lo_r [T, N] (long), w_r, r, and records resid, B (demand), C, Ey, at_limit,
//   U (population utility g . u) [T, N] (zeros unless record), and the final lags [N, L].
template <typename T>
std::vector<Tensor> huggett_forward_impl(const Tensor& B, const Tensor& cash, const Tensor& r_grid,
                                         const Tensor& s_path, const Tensor& g0, const Tensor& P_y,
                                         const Tensor& b_grid, const Tensor& lut, double bmin, double inv_h,
                                         const Tensor& y_j, int64_t T_, double beta, double crra,
                                         double c_min, double bond_supply, bool partial, bool evolve_g,
                                         bool record, const Tensor& d_hist, const Tensor& V, const Tensor& lags0,
                                         const std::vector<double>& lag_grid) {
  const int64_t nr = B.size(1), J = B.size(2), N = g0.size(0);
  const int64_t ny = P_y.size(0), nb = J / ny;
  const LagGrid lg = lag_grid_of(lags0, lag_grid, N);
  TORCH_CHECK(B.size(0) == cash.size(0) * lg.M && (lg.L == 0 || !partial), "huggett: B [nz n_lag^L, nr, J]");
  auto opts = g0.options();
  Tensor g_out = g0.clone();
  Tensor lags_out = lags0.clone();
  T* lagp = lags_out.data_ptr<T>();
  check_history(d_hist, T_, N, J, g0);
  Tensor obj = at::zeros({N}, opts);
  Tensor lo_r = at::empty({T_, N}, s_path.options());
  Tensor zi_t = at::empty({T_, N}, s_path.options());
  Tensor w_r = at::empty({T_, N}, opts), r_t = at::empty({T_, N}, opts);
  const int64_t nrec = record ? T_ : 0;
  Tensor resid = at::zeros({T_, N}, opts);
  Tensor rec = at::zeros({5, nrec, N}, opts);  // demand, C, Ey, at_limit, U
  const T* Bp = B.data_ptr<T>();
  const T* cashp = cash.data_ptr<T>();
  const T* rg = r_grid.data_ptr<T>();
  const int64_t* sp = s_path.data_ptr<int64_t>();
  const T* P = P_y.data_ptr<T>();
  const T* yj = y_j.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  T* gp = g_out.data_ptr<T>();
  T* dh = d_hist.data_ptr<T>();
  T* objp = obj.data_ptr<T>();
  int64_t* lop = lo_r.data_ptr<int64_t>();
  int64_t* zip = zi_t.data_ptr<int64_t>();
  T* wp = w_r.data_ptr<T>();
  T* rp = r_t.data_ptr<T>();
  T* resp = resid.data_ptr<T>();
  T* recp = rec.data_ptr<T>();
  const T cmin = static_cast<T>(c_min);
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(beta, static_cast<double>(T_));
  // partial equilibrium without the population histogram: the rate is a node of the chain, so the
  // action row is one of nr node rows (NodeRows)
  const bool node_rows = partial && !evolve_g;
  NodeRows<T> rows(node_rows ? nr : 0, J, false);
  if (node_rows) {
    for (int64_t s = 0; s < nr; ++s) {
      int64_t lr;
      double wd;
      node_bracket(s, nr, lr, wd);
      const T w = static_cast<T>(wd);
      const T r = rg[lr] * (T(1) - w) + rg[lr + 1] * w;
      rows.build(s, Bp + lr * J, Bp + (lr + 1) * J, w, T(1) / (T(1) + r), cashp, loc, crra, cmin);
    }
  }
  parallel_paths(N, [&](int64_t n0, int64_t n1) {
    std::vector<T> d(J), tg(J), td(J), bn(J), c(J), u(J), wb(J), slab(lg.L ? nr * J : 0);
    std::vector<int32_t> lo(J);
    std::vector<double> S(nr);
    int64_t mc[4];
    T wc[4];
    for (int64_t n = n0; n < n1; ++n) {
      T* g = gp + n * J;
      T* lag = lagp + n * lg.L;
      std::fill(d.begin(), d.end(), T(1) / T(J));
      double disc = 1.0, total = 0.0;
      for (int64_t t = 0; t < T_; ++t) {
        const int64_t s = sp[t * N + n];
        int64_t zi, lr;
        double wr;
        const T* Bz = Bp;
        if (partial) {
          zi = 0;
          node_bracket(s, nr, lr, wr);
        } else {
          zi = s;
          Bz = Bp + zi * nr * J;
          if (lg.L) {  // the table at the path's lag: its corners blended into the slab, row by row as the
                       // clearing first reads them (it screens only up to the schedule's crossing)
            const int64_t K = lag_corners<T>(lag, lg, mc, wc);
            T* sl = slab.data();
            int64_t blended = 0;
            const auto ready = [&](int64_t upto) {
              for (; blended < upto; ++blended) {
                T* row = sl + blended * J;
                const T* C0 = Bp + ((zi * lg.M + mc[0]) * nr + blended) * J;
                const T w0 = wc[0];
#pragma omp simd
                for (int64_t j = 0; j < J; ++j) row[j] = w0 * C0[j];
                for (int64_t k = 1; k < K; ++k) {
                  const T* Ck = Bp + ((zi * lg.M + mc[k]) * nr + blended) * J;
                  const T wk = wc[k];
#pragma omp simd
                  for (int64_t j = 0; j < J; ++j) row[j] = row[j] + wk * Ck[j];
                }
              }
            };
            clear_schedule<T>(sl, nr, g, J, bond_supply, S.data(), lr, wr, ready);
            Bz = sl;
          } else {
            clear_schedule<T>(Bz, nr, g, J, bond_supply, S.data(), lr, wr);
          }
        }
        const T w = static_cast<T>(wr);
        const T r = rg[lr] * (T(1) - w) + rg[lr + 1] * w;
        const T q = T(1) / (T(1) + r);
        zip[t * N + n] = zi;
        lop[t * N + n] = lr;
        wp[t * N + n] = w;
        rp[t * N + n] = r;
        for (int64_t l = lg.L - 1; l > 0; --l) lag[l] = lag[l - 1];  // today's rate is tomorrow's r_-1
        if (lg.L) lag[0] = r;
        std::memcpy(dh + (t * N + n) * J, d.data(), J * sizeof(T));
        if (node_rows) {
          total += disc * dot<T>(d.data(), &rows.u[s * J], J);
          disc *= beta;
          std::fill(td.begin(), td.end(), T(0));
          scatter_row<T>(d.data(), &rows.lo[s * J], &rows.wb[s * J], nb, ny, td.data());
          resp[t * N + n] = T(0);
          mix_forward<T>(td.data(), P, nb, ny, d.data());
          continue;
        }
        const T* B0 = Bz + lr * J;
        const T* B1 = B0 + J;
        const T* cz = cashp + zi * J;
        T* bnp = bn.data();
        T* cp = c.data();
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          bnp[j] = B0[j] * (T(1) - w) + B1[j] * w;
          cp[j] = cz[j] - bnp[j] * q;
        }
        utility_row<T, true, false>(cp, J, crra, cmin, u.data(), nullptr);
        total += disc * dot<T>(d.data(), u.data(), J);
        disc *= beta;
        lottery_row<T, false>(loc, bnp, J, lo.data(), wb.data(), nullptr);
        std::fill(td.begin(), td.end(), T(0));
        if (evolve_g) {
          std::fill(tg.begin(), tg.end(), T(0));
          scatter2_row<T>(d.data(), g, lo.data(), wb.data(), nb, ny, td.data(), tg.data());
        } else {
          scatter_row<T>(d.data(), lo.data(), wb.data(), nb, ny, td.data());
        }
        double demand = 0.0;
        if (evolve_g) {
          demand = dot<T>(bnp, g, J);
          if (record) {
            T at_limit = 0;
            for (int64_t y = 0; y < ny; ++y) at_limit += g[y];
            recp[(0 * nrec + t) * N + n] = static_cast<T>(demand);
            recp[(1 * nrec + t) * N + n] = static_cast<T>(dot<T>(cp, g, J));
            recp[(2 * nrec + t) * N + n] = static_cast<T>(dot<T>(yj, g, J));
            recp[(3 * nrec + t) * N + n] = at_limit;
            recp[(4 * nrec + t) * N + n] = static_cast<T>(dot<T>(u.data(), g, J));
          }
          mix_forward<T>(tg.data(), P, nb, ny, g);
        }
        resp[t * N + n] = static_cast<T>(demand - (partial ? 0.0 : bond_supply));
        mix_forward<T>(td.data(), P, nb, ny, d.data());
      }
      if (Vt != nullptr) total += betaT * dot<T>(d.data(), Vt + n * J, J);
      objp[n] = static_cast<T>(total);
    }
  });
  return {obj, g_out, d_hist, zi_t, lo_r, w_r, r_t, resid, rec, lags_out};
}

template <typename T>
Tensor huggett_backward_impl(const Tensor& gobj, const Tensor& B, const Tensor& cash, const Tensor& d_hist,
                             const Tensor& zi_t, const Tensor& lo_r, const Tensor& w_r, const Tensor& r_t,
                             const Tensor& P_y, const Tensor& b_grid, const Tensor& lut, double bmin,
                             double inv_h, double beta, double crra, double c_min, const Tensor& V, const Tensor& lags0,
                             const std::vector<double>& lag_grid) {
  const int64_t nz = B.size(0), nr = B.size(1), J = B.size(2);  // nz: table rows (z node, lag node)
  const int64_t T_ = d_hist.size(0), N = d_hist.size(1);
  const LagGrid lg = lag_grid_of(lags0, lag_grid, N);
  TORCH_CHECK(B.size(0) == cash.size(0) * lg.M, "huggett: B [nz n_lag^L, nr, J]");
  const T* lags0p = lags0.data_ptr<T>();
  const int64_t ny = P_y.size(0), nb = J / ny;
  const T* Bp = B.data_ptr<T>();
  const T* cashp = cash.data_ptr<T>();
  const T* dh = d_hist.data_ptr<T>();
  const int64_t* zip = zi_t.data_ptr<int64_t>();
  const int64_t* lop = lo_r.data_ptr<int64_t>();
  const T* wp = w_r.data_ptr<T>();
  const T* rp = r_t.data_ptr<T>();
  const T* P = P_y.data_ptr<T>();
  const T* go = gobj.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  const T cmin = static_cast<T>(c_min);
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(beta, static_cast<double>(T_));
  std::vector<double> disc(T_);
  for (int64_t t = 0; t < T_; ++t) disc[t] = std::pow(beta, static_cast<double>(t));
  std::vector<int32_t> yidx(J);
  for (int64_t j = 0; j < J; ++j) yidx[j] = static_cast<int32_t>(j % ny);
  // every price on a node (partial equilibrium): node rows keyed by z node and rate node
  bool on_nodes = lg.L == 0;
  for (int64_t i = 0; i < T_ * N && on_nodes; ++i) on_nodes = wp[i] == T(0) || wp[i] == T(1);
  NodeRows<T> rows(on_nodes ? nz * nr : 0, J, true);
  if (on_nodes) {
    for (int64_t i = 0; i < T_ * N; ++i) {
      const int64_t s = lop[i] + (wp[i] == T(1) ? 1 : 0), k = zip[i] * nr + s;
      if (rows.built[k]) continue;
      int64_t lr;
      double wd;
      node_bracket(s, nr, lr, wd);
      const T w = static_cast<T>(wd);
      const T* B0 = Bp + (zip[i] * nr + lr) * J;
      rows.build(k, B0, B0 + J, w, T(1) / (T(1) + rp[i]), cashp + zip[i] * J, loc, crra, cmin);
    }
  }
  Tensor grad_table = table_gradient<T>(lg.L > 0, N, nz * nr, J, B.options(), [&](const auto& acc, int64_t n0,
                                                                                int64_t n1) {
    std::vector<T> lam(J), lam_new(J), V(J), bn(J), c(J), u(J), mu(J), wb(J), dw(J), gbv(lg.L ? J : 0);
    std::vector<T> slo(lg.L ? J : 0), shi(lg.L ? J : 0);
    std::vector<int32_t> lo(J);
    const int32_t* yi = yidx.data();
    const int32_t ny32 = static_cast<int32_t>(ny);
    int64_t mc[4];
    T wc[4], lag[2];
    for (int64_t n = n0; n < n1; ++n) {
      terminal_adjoint<T>(lam, Vt == nullptr ? nullptr : Vt + n * J, betaT, go[n]);
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const int64_t zi = zip[t * N + n], lr = lop[t * N + n];
        const T w = wp[t * N + n], r = rp[t * N + n];
        const T q = T(1) / (T(1) + r);
        const T bt = static_cast<T>(disc[t] * static_cast<double>(go[n]));
        mix_backward<T>(lam.data(), P, nb, ny, V.data());
        if (on_nodes) {
          const int64_t k = zi * nr + lr + (w == T(1) ? 1 : 0);
          const T *ur = &rows.u[k * J], *mur = &rows.mu[k * J], *wr = &rows.wb[k * J], *dwr = &rows.dw[k * J];
          const int32_t* lor = &rows.lo[k * J];
          const T* d = dh + (t * N + n) * J;
          T* G = acc.at(k);
          T *Vp = V.data(), *ln = lam_new.data();
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            const int32_t i0 = lor[j] * ny32 + yi[j];
            const T v0 = Vp[i0], v1 = Vp[i0 + ny32];
            ln[j] = bt * ur[j] + (T(1) - wr[j]) * v0 + wr[j] * v1;
            G[j] += d[j] * (-bt * mur[j] * q + (v1 - v0) * dwr[j]);
          }
          std::swap(lam, lam_new);
          continue;
        }
        const T* B0 = Bp + (zi * nr + lr) * J;
        const T* B1 = B0 + J;
        T* G0 = lg.L ? nullptr : acc.at(zi * nr + lr);
        T* G1 = lg.L ? nullptr : acc.at(zi * nr + lr + 1);
        int64_t K = 0;
        if (lg.L) {  // the lag-blended rows lr and lr + 1 of the forward's slab
          lags_at<T>(rp, lags0p, t, n, N, lg, lag);
          K = lag_corners<T>(lag, lg, mc, wc);
          for (int64_t k = 0; k < K; ++k) {
            const T* Ck = Bp + ((zi * lg.M + mc[k]) * nr + lr) * J;
            const T wk = wc[k];
            T *a0 = slo.data(), *a1 = shi.data();
#pragma omp simd
            for (int64_t j = 0; j < J; ++j) {
              a0[j] = k == 0 ? wk * Ck[j] : a0[j] + wk * Ck[j];
              a1[j] = k == 0 ? wk * Ck[J + j] : a1[j] + wk * Ck[J + j];
            }
          }
          B0 = slo.data();
          B1 = shi.data();
        }
        const T* cz = cashp + zi * J;
        const T* d = dh + (t * N + n) * J;
        T *bnp = bn.data(), *cp = c.data(), *up = u.data(), *mup = mu.data(), *wbp = wb.data(), *dwp = dw.data();
        T *Vp = V.data(), *ln = lam_new.data();
        const int32_t* lop_ = lo.data();
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          bnp[j] = B0[j] * (T(1) - w) + B1[j] * w;
          cp[j] = cz[j] - bnp[j] * q;
        }
        utility_row<T, true, true>(cp, J, crra, cmin, up, mup);
        lottery_row<T, true>(loc, bnp, J, lo.data(), wbp, dwp);
        const auto gb_row = [&](auto lagged) {
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            const int32_t i0 = lop_[j] * ny32 + yi[j];
            const T v0 = Vp[i0], v1 = Vp[i0 + ny32];
            ln[j] = bt * up[j] + (T(1) - wbp[j]) * v0 + wbp[j] * v1;
            const T gb = d[j] * (-bt * mup[j] * q + (v1 - v0) * dwp[j]);
            if constexpr (decltype(lagged)::value) {
              gbv[j] = gb;
            } else {
              G0[j] += (T(1) - w) * gb;
              G1[j] += w * gb;
            }
          }
        };
        if (K) gb_row(std::true_type{});
        else gb_row(std::false_type{});
        for (int64_t k = 0; k < K; ++k) {  // autograd's rule: corner k gets w_k (1 - w) gb and w_k w gb
          T* H0 = acc.at((zi * lg.M + mc[k]) * nr + lr);
          T* H1 = acc.at((zi * lg.M + mc[k]) * nr + lr + 1);
          const T wk = wc[k];
          const T* gv = gbv.data();
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            H0[j] += wk * ((T(1) - w) * gv[j]);
            H1[j] += wk * (w * gv[j]);
          }
        }
        std::swap(lam, lam_new);
      }
    }
  });
  return grad_table.view({nz, nr, J});
}

// ------------------------------------------------------------------------------------ Krusell-Smith
// share [nw, nr, J] consumption share; b_j, y_j [J]; z_grid [nz]; s_path [T(+1), N] TFP nodes.
// Returns obj [N], g_T, d_hist [T, N, J], r, w [T, N], records K, C, resid, at_limit, U [T, N], and the
// final lags [N, L]. With lags (L > 0) share's rows are (w node, lag node), w major: [nw M, nr, J], and the
// share is the lag-corner blend of the bilinear (r, w) interpolations.
template <typename T>
std::vector<Tensor> ks_forward_impl(const Tensor& share, const Tensor& b_j, const Tensor& y_j,
                                    const Tensor& z_grid, const Tensor& s_path, const Tensor& g0,
                                    const Tensor& P_y, const Tensor& b_grid, const Tensor& lut, double bmin,
                                    double inv_h, int64_t T_, double beta, double crra, double c_min,
                                    double borrowing_limit, double alpha, double delta, double r_min,
                                    double dr, double w_min, double dw_step, bool record,
                                    const Tensor& d_hist, const Tensor& V, const Tensor& lags0, const std::vector<double>& lag_grid) {
  const int64_t nr = share.size(1), J = share.size(2), N = g0.size(0);
  const int64_t ny = P_y.size(0), nb = J / ny;
  const LagGrid lg = lag_grid_of(lags0, lag_grid, N);
  TORCH_CHECK(share.size(0) % lg.M == 0, "ks: share [nw n_lag^L, nr, J]");
  const int64_t nw = share.size(0) / lg.M, M = lg.M;
  auto opts = g0.options();
  Tensor g_out = g0.clone();
  Tensor lags_out = lags0.clone();
  T* lagp = lags_out.data_ptr<T>();
  check_history(d_hist, T_, N, J, g0);
  Tensor obj = at::zeros({N}, opts);
  Tensor r_t = at::empty({T_, N}, opts), w_t = at::empty({T_, N}, opts);
  Tensor resid = at::zeros({T_, N}, opts);
  const int64_t nrec = record ? T_ : 0;
  Tensor rec = at::zeros({4, nrec, N}, opts);  // K, C, at_limit, U
  const T* sh = share.data_ptr<T>();
  const T* bj = b_j.data_ptr<T>();
  const T* yj = y_j.data_ptr<T>();
  const T* zg = z_grid.data_ptr<T>();
  const int64_t* sp = s_path.data_ptr<int64_t>();
  const T* P = P_y.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  T* gp = g_out.data_ptr<T>();
  T* dh = d_hist.data_ptr<T>();
  T* objp = obj.data_ptr<T>();
  T* rp = r_t.data_ptr<T>();
  T* wpp = w_t.data_ptr<T>();
  T* resp = resid.data_ptr<T>();
  T* recp = rec.data_ptr<T>();
  const T cmin = static_cast<T>(c_min), bl = static_cast<T>(borrowing_limit);
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(beta, static_cast<double>(T_));
  parallel_paths(N, [&](int64_t n0, int64_t n1) {
    std::vector<T> d(J), tg(J), td(J), kn(J), c(J), u(J), wb(J), sv(lg.L ? J : 0);
    std::vector<int32_t> lo(J);
    int64_t mc[4];
    T wc[4];
    for (int64_t n = n0; n < n1; ++n) {
      T* g = gp + n * J;
      T* lag = lagp + n * lg.L;
      std::fill(d.begin(), d.end(), T(1) / T(J));
      double disc = 1.0, total = 0.0;
      for (int64_t t = 0; t < T_; ++t) {
        const T z = zg[sp[t * N + n]];
        T K = static_cast<T>(dot<T>(bj, g, J));
        if (K < T(1e-6)) K = T(1e-6);
        const T r = static_cast<T>(alpha) * z * std::pow(K, static_cast<T>(alpha - 1)) - static_cast<T>(delta);
        const T wage = static_cast<T>(1 - alpha) * z * std::pow(K, static_cast<T>(alpha));
        rp[t * N + n] = r;
        wpp[t * N + n] = wage;
        T pr = (r - static_cast<T>(r_min)) / static_cast<T>(dr);
        pr = pr < T(0) ? T(0) : (pr > T(nr - 1) ? T(nr - 1) : pr);
        const int64_t lr = std::min<int64_t>(static_cast<int64_t>(pr), nr - 2);
        const T ar = pr - T(lr);
        T pw = (wage - static_cast<T>(w_min)) / static_cast<T>(dw_step);
        pw = pw < T(0) ? T(0) : (pw > T(nw - 1) ? T(nw - 1) : pw);
        const int64_t lw = std::min<int64_t>(static_cast<int64_t>(pw), nw - 2);
        const T aw = pw - T(lw);
        const T* S00 = sh + (lw * nr + lr) * J;
        const T* S01 = S00 + J;
        const T* S10 = sh + ((lw + 1) * nr + lr) * J;
        const T* S11 = S10 + J;
        std::memcpy(dh + (t * N + n) * J, d.data(), J * sizeof(T));
        if (lg.L) {  // the share at the path's lag: lag corners of the bilinear (r, w) interpolation
          const int64_t K = lag_corners<T>(lag, lg, mc, wc);
          for (int64_t k = 0; k < K; ++k) {
            const T* C00 = sh + ((lw * M + mc[k]) * nr + lr) * J;
            const T* C10 = sh + (((lw + 1) * M + mc[k]) * nr + lr) * J;
            const T wk = wc[k];
            T* svp = sv.data();
#pragma omp simd
            for (int64_t j = 0; j < J; ++j) {
              const T s_lo = C00[j] * (T(1) - ar) + C00[J + j] * ar;
              const T s_hi = C10[j] * (T(1) - ar) + C10[J + j] * ar;
              const T x = wk * (s_lo * (T(1) - aw) + s_hi * aw);
              svp[j] = k == 0 ? x : svp[j] + x;
            }
          }
          for (int64_t l = lg.L - 1; l > 0; --l) lag[l] = lag[l - 1];  // today's rate is tomorrow's r_-1
          lag[0] = r;
        }
        const T* svp = sv.data();
        T *knp = kn.data(), *cp = c.data();
        const auto act_row = [&](auto lagged) {
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            T s;
            if constexpr (decltype(lagged)::value) {
              s = svp[j];
            } else {
              const T s_lo = S00[j] * (T(1) - ar) + S01[j] * ar;
              const T s_hi = S10[j] * (T(1) - ar) + S11[j] * ar;
              s = s_lo * (T(1) - aw) + s_hi * aw;
            }
            const T cash = (T(1) + r) * bj[j] + wage * yj[j];
            T cc = s * cash;
            cc = cc < cmin ? cmin : cc;
            cc = std::min(cc, cash - bl);
            cp[j] = cc;
            knp[j] = cash - cc;
          }
        };
        if (lg.L) act_row(std::true_type{});
        else act_row(std::false_type{});
        utility_row<T, false, false>(cp, J, crra, cmin, u.data(), nullptr);
        total += disc * dot<T>(d.data(), u.data(), J);
        disc *= beta;
        const double savings = dot<T>(knp, g, J);
        lottery_row<T, false>(loc, knp, J, lo.data(), wb.data(), nullptr);
        std::fill(td.begin(), td.end(), T(0));
        std::fill(tg.begin(), tg.end(), T(0));
        scatter2_row<T>(d.data(), g, lo.data(), wb.data(), nb, ny, td.data(), tg.data());
        if (record) {
          T at_limit = 0;
          for (int64_t y = 0; y < ny; ++y) at_limit += g[y];
          recp[(0 * nrec + t) * N + n] = K;
          recp[(1 * nrec + t) * N + n] = static_cast<T>(dot<T>(cp, g, J));
          recp[(2 * nrec + t) * N + n] = at_limit;
          recp[(3 * nrec + t) * N + n] = static_cast<T>(dot<T>(u.data(), g, J));
        }
        mix_forward<T>(td.data(), P, nb, ny, d.data());
        mix_forward<T>(tg.data(), P, nb, ny, g);
        resp[t * N + n] = static_cast<T>(dot<T>(bj, g, J) - savings);
      }
      if (Vt != nullptr) total += betaT * dot<T>(d.data(), Vt + n * J, J);
      objp[n] = static_cast<T>(total);
    }
  });
  return {obj, g_out, d_hist, r_t, w_t, resid, rec, lags_out};
}

template <typename T>
Tensor ks_backward_impl(const Tensor& gobj, const Tensor& share, const Tensor& b_j, const Tensor& y_j,
                        const Tensor& d_hist, const Tensor& r_t, const Tensor& w_t, const Tensor& P_y,
                        const Tensor& b_grid, const Tensor& lut, double bmin, double inv_h, double beta,
                        double crra, double c_min, double borrowing_limit, double r_min, double dr,
                        double w_min, double dw_step, const Tensor& V, const Tensor& lags0, const std::vector<double>& lag_grid) {
  const int64_t nr = share.size(1), J = share.size(2);
  const int64_t T_ = d_hist.size(0), N = d_hist.size(1);
  const LagGrid lg = lag_grid_of(lags0, lag_grid, N);
  TORCH_CHECK(share.size(0) % lg.M == 0, "ks: share [nw n_lag^L, nr, J]");
  const int64_t nw = share.size(0) / lg.M, M = lg.M;
  const T* lags0p = lags0.data_ptr<T>();
  const int64_t ny = P_y.size(0), nb = J / ny;
  const T* sh = share.data_ptr<T>();
  const T* bj = b_j.data_ptr<T>();
  const T* yj = y_j.data_ptr<T>();
  const T* dh = d_hist.data_ptr<T>();
  const T* rp = r_t.data_ptr<T>();
  const T* wpp = w_t.data_ptr<T>();
  const T* P = P_y.data_ptr<T>();
  const T* go = gobj.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  const T cmin = static_cast<T>(c_min), bl = static_cast<T>(borrowing_limit);
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(beta, static_cast<double>(T_));
  std::vector<double> disc(T_);
  for (int64_t t = 0; t < T_; ++t) disc[t] = std::pow(beta, static_cast<double>(t));
  std::vector<int32_t> yidx(J);
  for (int64_t j = 0; j < J; ++j) yidx[j] = static_cast<int32_t>(j % ny);
  Tensor grad_table = table_gradient<T>(lg.L > 0, N, nw * M * nr, J, share.options(), [&](const auto& acc,
                                                                                      int64_t n0, int64_t n1) {
    std::vector<T> lam(J), lam_new(J), V(J), kn(J), c(J), dc(J), u(J), mu(J), wb(J), dwv(J), sv(lg.L ? J : 0),
        gsv(lg.L ? J : 0);
    std::vector<int32_t> lo(J);
    const int32_t* yi = yidx.data();
    const int32_t ny32 = static_cast<int32_t>(ny);
    int64_t mc[4];
    T wc[4], lag[2];
    for (int64_t n = n0; n < n1; ++n) {
      terminal_adjoint<T>(lam, Vt == nullptr ? nullptr : Vt + n * J, betaT, go[n]);
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const T r = rp[t * N + n], wage = wpp[t * N + n];
        T pr = (r - static_cast<T>(r_min)) / static_cast<T>(dr);
        pr = pr < T(0) ? T(0) : (pr > T(nr - 1) ? T(nr - 1) : pr);
        const int64_t lr = std::min<int64_t>(static_cast<int64_t>(pr), nr - 2);
        const T ar = pr - T(lr);
        T pw = (wage - static_cast<T>(w_min)) / static_cast<T>(dw_step);
        pw = pw < T(0) ? T(0) : (pw > T(nw - 1) ? T(nw - 1) : pw);
        const int64_t lw = std::min<int64_t>(static_cast<int64_t>(pw), nw - 2);
        const T aw = pw - T(lw);
        const T c00 = (T(1) - ar) * (T(1) - aw), c01 = ar * (T(1) - aw), c10 = (T(1) - ar) * aw, c11 = ar * aw;
        const int64_t o00 = (lw * nr + lr) * J, o10 = ((lw + 1) * nr + lr) * J;
        const T *S00 = sh + o00, *S01 = S00 + J, *S10 = sh + o10, *S11 = S10 + J;
        T *G00 = nullptr, *G01 = nullptr, *G10 = nullptr, *G11 = nullptr;
        if (!lg.L) {
          G00 = acc.at(o00 / J), G01 = acc.at(o00 / J + 1), G10 = acc.at(o10 / J), G11 = acc.at(o10 / J + 1);
        }
        const T bt = static_cast<T>(disc[t] * static_cast<double>(go[n]));
        mix_backward<T>(lam.data(), P, nb, ny, V.data());
        const T* d = dh + (t * N + n) * J;
        T *knp = kn.data(), *cp = c.data(), *dcp = dc.data(), *up = u.data(), *mup = mu.data();
        T *wbp = wb.data(), *dwp = dwv.data(), *Vp = V.data(), *ln = lam_new.data();
        const int32_t* lop_ = lo.data();
        int64_t K = 0;
        if (lg.L) {  // the forward's lag-blended share
          lags_at<T>(rp, lags0p, t, n, N, lg, lag);
          K = lag_corners<T>(lag, lg, mc, wc);
          for (int64_t k = 0; k < K; ++k) {
            const T* C00 = sh + ((lw * M + mc[k]) * nr + lr) * J;
            const T* C10 = sh + (((lw + 1) * M + mc[k]) * nr + lr) * J;
            const T wk = wc[k];
            T* svp = sv.data();
#pragma omp simd
            for (int64_t j = 0; j < J; ++j) {
              const T s_lo = C00[j] * (T(1) - ar) + C00[J + j] * ar;
              const T s_hi = C10[j] * (T(1) - ar) + C10[J + j] * ar;
              const T x = wk * (s_lo * (T(1) - aw) + s_hi * aw);
              svp[j] = k == 0 ? x : svp[j] + x;
            }
          }
        }
        const T* svp = sv.data();
        T* gsp = gsv.data();
        const auto act_row = [&](auto lagged) {
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            T s;
            if constexpr (decltype(lagged)::value) {
              s = svp[j];
            } else {
              const T s_lo = S00[j] * (T(1) - ar) + S01[j] * ar;
              const T s_hi = S10[j] * (T(1) - ar) + S11[j] * ar;
              s = s_lo * (T(1) - aw) + s_hi * aw;
            }
            const T cash = (T(1) + r) * bj[j] + wage * yj[j];
            const T c0 = s * cash;
            const T c1 = c0 < cmin ? cmin : c0;
            const T cap = cash - bl;
            const T cc = std::min(c1, cap);
            // torch's gradients: clamp passes where c0 >= c_min; minimum splits a tie evenly
            dcp[j] = c0 >= cmin ? (c1 < cap ? cash : (c1 == cap ? T(0.5) * cash : T(0))) : T(0);
            cp[j] = cc;
            knp[j] = cash - cc;
          }
        };
        if (K) act_row(std::true_type{});
        else act_row(std::false_type{});
        utility_row<T, false, true>(cp, J, crra, cmin, up, mup);
        lottery_row<T, true>(loc, knp, J, lo.data(), wbp, dwp);
        const auto gs_row = [&](auto lagged) {
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            const int32_t i0 = lop_[j] * ny32 + yi[j];
            const T v0 = Vp[i0], v1 = Vp[i0 + ny32];
            ln[j] = bt * up[j] + (T(1) - wbp[j]) * v0 + wbp[j] * v1;
            const T gs = d[j] * (bt * mup[j] - (v1 - v0) * dwp[j]) * dcp[j];
            if constexpr (decltype(lagged)::value) {
              gsp[j] = gs;
            } else {
              G00[j] += c00 * gs;
              G01[j] += c01 * gs;
              G10[j] += c10 * gs;
              G11[j] += c11 * gs;
            }
          }
        };
        if (K) gs_row(std::true_type{});
        else gs_row(std::false_type{});
        for (int64_t k = 0; k < K; ++k) {  // corner k of the lags gets w_k of the share's gradient
          const int64_t s00 = (lw * M + mc[k]) * nr + lr, s10 = ((lw + 1) * M + mc[k]) * nr + lr;
          T *H00 = acc.at(s00), *H01 = acc.at(s00 + 1), *H10 = acc.at(s10), *H11 = acc.at(s10 + 1);
          const T wk = wc[k];
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            const T gk = wk * gsp[j];
            H00[j] += c00 * gk;
            H01[j] += c01 * gk;
            H10[j] += c10 * gk;
            H11[j] += c11 * gk;
          }
        }
        std::swap(lam, lam_new);
      }
    }
  });
  return grad_table.view({nw * M, nr, J});
}

void check_cpu(const std::vector<Tensor>& ts) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu(), "srl fused kernels run on CPU tensors only");
    TORCH_CHECK(t.is_contiguous(), "srl fused kernels need contiguous tensors");
  }
}


// HANK's consumption: the share s of cash on hand, at least c_min, at most what the borrowing
// limit leaves (cash - b_min). One definition for the clearing schedule, the rollout and the adjoints.
template <typename T>
inline T hank_consumption(T s, T cash, T cmin, T blim) {
  return std::min(std::max(s * cash, cmin), cash - blim);
}

// HANK's clearing schedule: for every path p and wage node k, effective labour L, the transfer per
// unit of productivity tau and consumption C, with households acting at node k (r interpolated
// between r nodes lo and lo + 1 with weight a). Forward only: hank.py evaluates it without gradient
// (prices are detached), so no adjoint is needed. Same maths as HANK._clearing_schedule; the sums
// over states are vectorised, so their order (not their precision) differs from torch's.
template <typename T>
std::vector<Tensor> hank_clearing_impl(const Tensor& share, const Tensor& hours, const Tensor& lo_r,
                                       const Tensor& a_r, const Tensor& r_k, const Tensor& cost_k,
                                       const Tensor& z, const Tensor& g, const Tensor& y_j, const Tensor& b_j,
                                       const Tensor& w_grid, double bond_supply, double c_min,
                                       double borrowing_limit) {
  const int64_t nw = share.size(0), nr = share.size(1), J = share.size(2), N = g.size(0);
  TORCH_CHECK(hours.sizes() == share.sizes(), "hank_clearing: hours and share tables differ in shape");
  TORCH_CHECK(lo_r.size(0) == N && lo_r.size(1) == nw, "hank_clearing: lo_r must be [N, n_w]");
  Tensor L_t = at::empty({N, nw}, g.options()), C_t = at::empty({N, nw}, g.options()),
         tau_t = at::empty({N, nw}, g.options());
  const T *S = share.data_ptr<T>(), *H = hours.data_ptr<T>(), *a = a_r.data_ptr<T>(), *r = r_k.data_ptr<T>(),
          *cost = cost_k.data_ptr<T>(), *zp = z.data_ptr<T>(), *gp = g.data_ptr<T>(), *y = y_j.data_ptr<T>(),
          *b = b_j.data_ptr<T>(), *w = w_grid.data_ptr<T>();
  const int64_t* lo = lo_r.data_ptr<int64_t>();
  T *L = L_t.data_ptr<T>(), *C = C_t.data_ptr<T>(), *tau = tau_t.data_ptr<T>();
  std::atomic<bool> bad_index{false};
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> yg(J);
    for (int64_t p = begin; p < end; ++p) {
      const T* gj = gp + p * J;
      T debt = T(0), yg_sum = T(0);
#pragma omp simd reduction(+ : debt, yg_sum)
      for (int64_t j = 0; j < J; ++j) {
        yg[j] = y[j] * gj[j];
        debt += b[j] * gj[j];
        yg_sum += yg[j];
      }
      for (int64_t k = 0; k < nw; ++k) {
        const int64_t q = p * nw + k, l = lo[q];
        if (l < 0 || l + 1 >= nr) { bad_index.store(true); L[q] = C[q] = tau[q] = T(0); continue; }
        const T ak = a[q], bk = T(1) - ak;
        const T* S0 = S + (k * nr + l) * J;
        const T* H0 = H + (k * nr + l) * J;
        T Lk = T(0);
#pragma omp simd reduction(+ : Lk)
        for (int64_t j = 0; j < J; ++j) Lk += (H0[j] * bk + H0[J + j] * ak) * yg[j];
        const T tk = (Lk * (zp[p] * cost[q] - w[k]) - r[q] * debt - (debt - static_cast<T>(bond_supply))) / yg_sum;
        const T R = T(1) + r[q], wk = w[k];
        T Ck = T(0);
#pragma omp simd reduction(+ : Ck)
        for (int64_t j = 0; j < J; ++j) {
          const T s = S0[j] * bk + S0[J + j] * ak, h = H0[j] * bk + H0[J + j] * ak;
          const T cash = R * b[j] + y[j] * (wk * h + tk);
          const T c = hank_consumption<T>(s, cash, static_cast<T>(c_min), static_cast<T>(borrowing_limit));
          Ck += c * gj[j];
        }
        L[q] = Lk;
        C[q] = Ck;
        tau[q] = tk;
      }
    }
  });
  TORCH_CHECK(!bad_index.load(), "hank_clearing: an r bracket index is outside the r grid");
  return {L_t, C_t, tau_t};
}


// The adjoint of one wage node's household step (autograd's rule for HANK._households): from the gradients of
// consumption g_cm (less savings'), of cash g_cash0 and hours g_n0 at the node, the gradients of the
// interpolated share (g_s) and hours (g_n). min and max split ties evenly; the clamp passes s cash >= c_min.
template <typename T>
inline void hank_node_adjoint(T sv, T cash, T cmin, T blim, T y, T w, T g_cm, T g_cash0, T g_n0, T& g_s, T& g_n) {
  const T raw = sv * cash, c1 = std::max(raw, cmin), cap = cash - blim;
  const bool lt = c1 < cap, gt = cap < c1;
  const T half = g_cm * T(0.5);
  const T g_c1 = lt ? g_cm : (gt ? T(0) : half);
  T g_cash = g_cash0 + (lt ? T(0) : (gt ? g_cm : half));
  const T g_raw = raw >= cmin ? g_c1 : T(0);
  g_s = g_raw * cash;
  g_cash += g_raw * sv;
  g_n = g_n0 + g_cash * y * w;
}

// HANK households at the two wage nodes bracketing the clearing wage, blended with the clearing
// weights (HANK._households is the torch definition): per path p, node m and state j
//   s, n = tables at row (w node, r node lo) and lo + 1, interpolated with weight a
//   cash = R b + y (w n + tau);  c_m = min(max(s cash, c_min), cash - b_min)
//   c = sum_m wt_m c_m,  hours = sum_m wt_m n,  b' = sum_m wt_m (cash - c_m).
// Prices, weights and transfers are detached, so the gradient flows only into the two tables;
// backward recomputes the forward per state (nothing [N, 2, J] is stored) and is autograd's rule
// (min and max split the gradient evenly at ties, the clamp passes it where s cash >= c_min).
template <typename T>
std::vector<Tensor> hank_households_impl(const Tensor& share, const Tensor& hours, const Tensor& row, const Tensor& a_r,
                                         const Tensor& wts, const Tensor& R2, const Tensor& w2, const Tensor& tau2,
                                         const Tensor& b_j, const Tensor& y_j, double c_min, double borrowing_limit,
                                         const Tensor* grads) {
  const int64_t rows = share.size(0) * share.size(1), J = share.size(2), N = row.size(0);
  const T *S = share.data_ptr<T>(), *H = hours.data_ptr<T>(), *a = a_r.data_ptr<T>(), *wt = wts.data_ptr<T>(),
          *R = R2.data_ptr<T>(), *w = w2.data_ptr<T>(), *tau = tau2.data_ptr<T>(), *b = b_j.data_ptr<T>(),
          *y = y_j.data_ptr<T>();
  const int64_t* rw = row.data_ptr<int64_t>();
  for (int64_t q = 0; q < 2 * N; ++q) {
    TORCH_CHECK(rw[q] >= 0 && rw[q] + 1 < rows, "hank_households: table row ", rw[q], " out of range");
  }
  const T cmin = static_cast<T>(c_min), blim = static_cast<T>(borrowing_limit);
  if (grads == nullptr) {
    Tensor c_t = at::empty({N, J}, share.options()), h_t = at::empty({N, J}, share.options()),
           bn_t = at::empty({N, J}, share.options());
    T *c = c_t.data_ptr<T>(), *h = h_t.data_ptr<T>(), *bn = bn_t.data_ptr<T>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        T* cp = c + p * J;
        T* hp = h + p * J;
        T* bp = bn + p * J;
        for (int64_t m = 0; m < 2; ++m) {
          const int64_t q = p * 2 + m;
          const T* S0 = S + rw[q] * J;
          const T* H0 = H + rw[q] * J;
          const T am = a[q], bm = T(1) - am, wm = wt[q], Rm = R[q], wg = w[q], tm = tau[q];
          for (int64_t j = 0; j < J; ++j) {
            const T sv = S0[j] * bm + S0[J + j] * am, nv = H0[j] * bm + H0[J + j] * am;
            const T cash = Rm * b[j] + y[j] * (wg * nv + tm);
            const T cm = hank_consumption<T>(sv, cash, cmin, blim);
            if (m == 0) {
              cp[j] = cm * wm;
              hp[j] = nv * wm;
              bp[j] = (cash - cm) * wm;
            } else {
              cp[j] += cm * wm;
              hp[j] += nv * wm;
              bp[j] += (cash - cm) * wm;
            }
          }
        }
      }
    });
    return {c_t, h_t, bn_t};
  }
  // backward: d objective / d (share, hours); threads own disjoint state columns j (no races)
  const T *gc = grads[0].data_ptr<T>(), *gh = grads[1].data_ptr<T>(), *gb = grads[2].data_ptr<T>();
  Tensor gS_t = at::zeros_like(share), gH_t = at::zeros_like(hours);
  T *gS = gS_t.data_ptr<T>(), *gH = gH_t.data_ptr<T>();
  at::parallel_for(0, J, 16, [&](int64_t j0, int64_t j1) {
    for (int64_t p = 0; p < N; ++p) {
      for (int64_t m = 0; m < 2; ++m) {
        const int64_t q = p * 2 + m;
        const T* S0 = S + rw[q] * J;
        const T* H0 = H + rw[q] * J;
        T* gS0 = gS + rw[q] * J;
        T* gH0 = gH + rw[q] * J;
        const T am = a[q], bm = T(1) - am, wm = wt[q], Rm = R[q], wg = w[q], tm = tau[q];
        for (int64_t j = j0; j < j1; ++j) {
          const T sv = S0[j] * bm + S0[J + j] * am, nv = H0[j] * bm + H0[J + j] * am;
          const T cash = Rm * b[j] + y[j] * (wg * nv + tm);
          T g_s, g_n;
          hank_node_adjoint<T>(sv, cash, cmin, blim, y[j], wg, (gc[p * J + j] - gb[p * J + j]) * wm,
                               gb[p * J + j] * wm, gh[p * J + j] * wm, g_s, g_n);
          gS0[j] += g_s * bm;
          gS0[J + j] += g_s * am;
          gH0[j] += g_n * bm;
          gH0[J + j] += g_n * am;
        }
      }
    }
  });
  return {gS_t, gH_t};
}

// log for the utility rows. float: Cephes' logf (frexp by bit operations, a degree-8 polynomial on
// [sqrt(1/2) - 1, sqrt(2) - 1], within about 1 ulp for positive normal x), which vectorises where glibc's
// scalar logf was a sixth of HANK's forward pass; double: std::log (the tests' torch-equal path).
template <typename T>
inline T log_row_value(T x) {
  if constexpr (std::is_same_v<T, double>) {
    return std::log(x);
  } else {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    float e = static_cast<float>(static_cast<int32_t>((bits >> 23) & 0xffu) - 126);
    bits = (bits & 0x807fffffu) | 0x3f000000u;  // mantissa in [0.5, 1)
    float m;
    std::memcpy(&m, &bits, sizeof m);
    const bool small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    const float f = small ? m + m - 1.0f : m - 1.0f;
    const float z = f * f;
    float y = 7.0376836292E-2f;
    y = y * f - 1.1514610310E-1f;
    y = y * f + 1.1676998740E-1f;
    y = y * f - 1.2420140846E-1f;
    y = y * f + 1.4249322787E-1f;
    y = y * f - 1.6668057665E-1f;
    y = y * f + 2.0000714765E-1f;
    y = y * f - 2.4999993993E-1f;
    y = y * f + 3.3333331174E-1f;
    y = y * f * z;
    y += -2.12194440E-4f * e;
    y += -0.5f * z;
    return f + y + 0.693359375f * e;
  }
}

// HANK's period utility u = log max(c, c_min) - n^k / k per state, and (WithMu) u_c (zero below
// c_min, clamp's gradient) and u_n = -n^(k-1). k = 1 + 1/frisch; the spec's Frisch 1 (k = 2) squares.
template <typename T, bool WithMu>
inline void hank_utility_row(const T* __restrict c, const T* __restrict n, int64_t J, T cmin, double k,
                             T* __restrict u, T* __restrict uc, T* __restrict un) {
  const T kk = static_cast<T>(k);
  if (k == 2.0) {
#pragma omp simd
    for (int64_t j = 0; j < J; ++j) {
      u[j] = log_row_value<T>(std::max(c[j], cmin)) - n[j] * n[j] / kk;
      if constexpr (WithMu) {
        uc[j] = c[j] >= cmin ? T(1) / c[j] : T(0);
        un[j] = -n[j];
      }
    }
    return;
  }
  for (int64_t j = 0; j < J; ++j) {
    u[j] = log_row_value<T>(std::max(c[j], cmin)) - std::pow(n[j], kk) / kk;
    if constexpr (WithMu) {
      uc[j] = c[j] >= cmin ? T(1) / c[j] : T(0);
      un[j] = -std::pow(n[j], kk - T(1));
    }
  }
}

// ------------------------------------------------------------------------------------------- HANK
// The whole HANK household rollout (hank.py's torch rollout is the definition), period-major: at
// each period the paths are grouped by exogenous state s = (z node, m node). Within a group every
// wage node k has the same inflation Pi[k, z], real rate r_k and r bracket, so the households'
// interpolated share and hours rows at each node are built once per call and state (HankRows) and
// stay in cache for the group's paths. The clearing schedule is then three dot products with g per node,
//   L_k = (H y) . g,   C_k = A_k . g + tau_k B_k . g,
// because c_j = min(max(s_j cash_j, c_min), cash_j - b_min), cash_j = R b_j + y_j (w n_j + tau), is
// affine in tau, A_kj + B_kj tau, on an interval around tau = 0 (the piece there: s cash, c_min, or the
// borrowing cap) whose intersection over states is [tau_lo, tau_hi]; outside it, the exact clamped sum
// as torch. Nodes are evaluated from the lowest wage up to the first upward crossing (the bracket
// market.bracket picks). The firm's profit (one number per path and period) stays in torch: it needs
// only the bracket (lo, om) this returns.
template <typename T>
struct HankRows {
  int64_t nw = 0, nr = 0, J = 0;
  std::vector<T> S, H, A, By, Hy, pi, r, cost, tau_lo, tau_hi;
  HankRows(int64_t nw_, int64_t nr_, int64_t J_)
      : nw(nw_), nr(nr_), J(J_), S(nw_ * J_), H(nw_ * J_), A(nw_ * J_), By(nw_ * J_), Hy(nw_ * J_), pi(nw_),
        r(nw_), cost(nw_), tau_lo(nw_), tau_hi(nw_) {}
};

// r at wage node k from the firm's inflation (Taylor rule and Fisher equation, as hank.py), and its
// bracket on the uniform r grid (krusell_smith.uniform_bracket).
template <typename T>
inline T hank_rate(T pi, T m, double R_bar, double phi_pi) {
  return static_cast<T>(R_bar) * std::pow(T(1) + pi, static_cast<T>(phi_pi - 1)) * m - T(1);
}

template <typename T>
inline void uniform_bracket(T x, double x_min, double step, int64_t n, int64_t& lo, T& a) {
  T pos = (x - static_cast<T>(x_min)) / static_cast<T>(step);
  pos = pos < T(0) ? T(0) : (pos > T(n - 1) ? T(n - 1) : pos);
  lo = std::min<int64_t>(static_cast<int64_t>(pos), n - 2);
  a = pos - T(lo);
}

// market.bracket for one path: the first upward crossing of 0 by ex[0..K), else the end segment
// nearest it; the weight on lo + 1 is clamped to [-extrapolate, 1 + extrapolate].
template <typename T>
inline void bracket_extrapolate(const T* ex, int64_t K, double extrapolate, int64_t& lo, T& w) {
  int64_t n_below = 0, first = -1;
  for (int64_t k = 0; k < K; ++k) n_below += ex[k] < T(0);
  for (int64_t k = 0; k + 1 < K; ++k) {
    if (ex[k] < T(0) && !(ex[k + 1] < T(0))) { first = k; break; }
  }
  lo = first >= 0 ? first : std::min<int64_t>(std::max<int64_t>(n_below - 1, 0), K - 2);
  const T e_lo = ex[lo], e_hi = ex[lo + 1], denom = e_hi - e_lo;
  w = denom != T(0) ? -e_lo / denom : T(0);
  if (n_below == K) w = std::max(w, T(1));
  if (n_below == 0) w = std::min(w, T(0));
  if (!std::isfinite(w)) w = T(0);
  w = std::min(std::max(w, static_cast<T>(-extrapolate)), static_cast<T>(1.0 + extrapolate));
}

// The same weight for a segment [lo, lo + 1] that crosses 0 upwards (then no end-node rule applies).
template <typename T>
inline T segment_weight(T e_lo, T e_hi, double extrapolate) {
  const T denom = e_hi - e_lo;
  T w = denom != T(0) ? -e_lo / denom : T(0);
  if (!std::isfinite(w)) w = T(0);
  return std::min(std::max(w, static_cast<T>(-extrapolate)), static_cast<T>(1.0 + extrapolate));
}

struct HankConsts {
  double beta, k_hours, c_min, blim, bond_supply, theta, R_bar, phi_pi, r_min, dr, extrapolate;
  int64_t nz, nm;
};

// Build the rows of exogenous state s (z node s / nm, m node s % nm).
template <typename T>
void build_hank_rows(HankRows<T>& R, int64_t s, const T* share, const T* hours, const T* Pi, const T* m_grid,
                     const T* w_grid, const T* b, const T* y, const HankConsts& c) {
  const int64_t nw = R.nw, nr = R.nr, J = R.J, zi = s / c.nm;
  const T m = m_grid[s % c.nm], cmin = static_cast<T>(c.c_min), blim = static_cast<T>(c.blim);
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < nw; ++k) {
    const T pi = Pi[k * c.nz + zi];
    const T r = hank_rate<T>(pi, m, c.R_bar, c.phi_pi);
    int64_t lr;
    T a;
    uniform_bracket<T>(r, c.r_min, c.dr, nr, lr, a);
    R.pi[k] = pi;
    R.r[k] = r;
    R.cost[k] = T(1) - static_cast<T>(c.theta / 2) * (pi * pi);
    const T* S0 = share + (k * nr + lr) * J;
    const T* H0 = hours + (k * nr + lr) * J;
    T *Sk = &R.S[k * J], *Hk = &R.H[k * J], *Ak = &R.A[k * J], *Bk = &R.By[k * J], *Lk = &R.Hy[k * J];
    const T Rk = T(1) + r, wk = w_grid[k], bk = T(1) - a;
    T lo_tau = -inf, hi_tau = inf;
    for (int64_t j = 0; j < J; ++j) {
      const T sv = S0[j] * bk + S0[J + j] * a, hv = H0[j] * bk + H0[J + j] * a;
      const T ap = Rk * b[j] + y[j] * (wk * hv), yv = y[j];  // cash = ap + y tau
      Sk[j] = sv;
      Hk[j] = hv;
      Lk[j] = hv * yv;
      // c = min(max(s cash, c_min), cash - b_min) is affine in cash x = ap + y tau on an interval: take
      // the piece at tau = 0 (c = s x, c_min, or the cap x - b_min) and where its conditions p x + q >= 0 hold
      T A, B, xl = -inf, xh = inf;
      auto keep = [&](T p, T q) {  // intersect [xl, xh] with {x : p x + q >= 0}
        if (p > T(0)) xl = std::max(xl, -q / p);
        else if (p < T(0)) xh = std::min(xh, -q / p);
        else if (!(q >= T(0))) xh = -inf;  // never (also NaN)
      };
      const T x0 = ap, raw0 = sv * x0, c1 = std::max(raw0, cmin);
      if (c1 < x0 - blim) {
        if (raw0 >= cmin) {  // c = s x
          A = sv * ap;
          B = sv * yv;
          keep(sv, -cmin);
          keep(T(1) - sv, -blim);
        } else {  // c = c_min
          A = cmin;
          B = T(0);
          keep(-sv, cmin);
          keep(T(1), -blim - cmin);
        }
      } else {  // c = x - b_min, the cap
        A = ap - blim;
        B = yv;
        if (raw0 >= x0 - blim) keep(sv - T(1), blim);
        else keep(T(-1), cmin + blim);
      }
      if (!(sv == sv)) xh = -inf;
      Ak[j] = A;
      Bk[j] = B;
      lo_tau = std::max(lo_tau, (xl - ap) / yv);
      hi_tau = std::min(hi_tau, (xh - ap) / yv);
    }
    // a relative margin so that rounding in the threshold never admits a binding clamp
    const T eps = T(64) * std::numeric_limits<T>::epsilon();
    R.tau_lo[k] = std::isfinite(lo_tau) ? lo_tau + (std::fabs(lo_tau) + T(1)) * eps : lo_tau;
    R.tau_hi[k] = std::isfinite(hi_tau) ? hi_tau - (std::fabs(hi_tau) + T(1)) * eps : hi_tau;
  }
}

// Returns the households' objective [N] (sum_t beta^t d_t . u_t), g_T, d_hist, the bracket's lower
// wage node lo [T, N] (long) and rec [16, T, N]: om, r, w, pi, z, L, C, Y, B, bond gap, labour gap,
// mass at the borrowing limit, then r and tau at nodes lo and lo + 1 (what the adjoint recomputes from).
template <typename T>
std::vector<Tensor> hank_forward_impl(const Tensor& share, const Tensor& hours, const Tensor& Pi, const Tensor& m_grid,
                                      const Tensor& z_grid, const Tensor& w_grid, const Tensor& b_j, const Tensor& y_j,
                                      const Tensor& s_path, const Tensor& g0, const Tensor& P_y, const Tensor& b_grid,
                                      const Tensor& lut, double bmin, double inv_h, int64_t T_, const HankConsts& c,
                                      const Tensor& d_hist, const Tensor& V) {
  const int64_t nw = share.size(0), nr = share.size(1), J = share.size(2), N = g0.size(0);
  const int64_t ny = P_y.size(0), nb = J / ny, nexo = c.nz * c.nm;
  TORCH_CHECK(hours.sizes() == share.sizes(), "hank_forward: hours and share tables differ in shape");
  TORCH_CHECK(Pi.size(0) == nw && Pi.size(1) == c.nz, "hank_forward: Pi must be [n_w, n_z]");
  auto opts = g0.options();
  Tensor g_out = g0.clone();
  check_history(d_hist, T_, N, J, g0);
  Tensor obj = at::zeros({N}, opts);
  Tensor lo_t = at::empty({T_, N}, s_path.options());
  // per period and path: om, r, w, pi, z, L, C, Y, B, bond gap, labour gap, at_limit, r2 x2, tau2 x2
  constexpr int64_t kRec = 16;
  Tensor rec = at::empty({kRec, T_, N}, opts);
  const T *sh = share.data_ptr<T>(), *hr = hours.data_ptr<T>(), *pip = Pi.data_ptr<T>(), *mg = m_grid.data_ptr<T>(),
          *zg = z_grid.data_ptr<T>(), *wg = w_grid.data_ptr<T>(), *bj_ = b_j.data_ptr<T>(), *yj_ = y_j.data_ptr<T>(),
          *P = P_y.data_ptr<T>();
  const int64_t* sp = s_path.data_ptr<int64_t>();
  for (int64_t i = 0; i < T_ * N; ++i) {
    TORCH_CHECK(sp[i] >= 0 && sp[i] < nexo, "hank_forward: exogenous state ", sp[i], " out of range");
  }
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  T* gp = g_out.data_ptr<T>();
  T* dh = d_hist.data_ptr<T>();
  T* objp = obj.data_ptr<T>();
  int64_t* lop = lo_t.data_ptr<int64_t>();
  T* rp = rec.data_ptr<T>();
  auto R_ = [&](int64_t field, int64_t t, int64_t n) -> T& { return rp[(field * T_ + t) * N + n]; };
  const T cmin_ = static_cast<T>(c.c_min), blim_ = static_cast<T>(c.blim), Bs_ = static_cast<T>(c.bond_supply);
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(c.beta, static_cast<double>(T_));
  std::vector<double> total(N, 0.0);
  for (int64_t n = 0; n < N; ++n) std::fill(dh + n * J, dh + (n + 1) * J, T(1) / T(J));
  const int64_t nthreads = std::max<int64_t>(1, at::get_num_threads());
  // the rows of every exogenous state the paths visit, built once per call
  std::vector<std::unique_ptr<HankRows<T>>> rows(nexo);
  std::vector<int64_t> visited;
  {
    std::vector<char> seen(nexo, 0);
    for (int64_t i = 0; i < T_ * N; ++i) seen[sp[i]] = 1;
    for (int64_t e = 0; e < nexo; ++e)
      if (seen[e]) {
        visited.push_back(e);
        rows[e] = std::make_unique<HankRows<T>>(nw, nr, J);
      }
  }
  parallel_paths(static_cast<int64_t>(visited.size()), [&](int64_t i, int64_t) {
    build_hank_rows<T>(*rows[visited[i]], visited[i], sh, hr, pip, mg, wg, bj_, yj_, c);
  });
  std::vector<int64_t> order(N), start(nexo + 1);
  std::vector<std::pair<int64_t, int64_t>> items;  // [begin, end) in order, one exogenous state each
  constexpr int64_t kChunk = 8;
  double disc = 1.0;
  for (int64_t t = 0; t < T_; ++t) {
    // group the paths by exogenous state (counting sort), cut into chunks
    std::fill(start.begin(), start.end(), 0);
    for (int64_t n = 0; n < N; ++n) ++start[sp[t * N + n] + 1];
    for (int64_t e = 0; e < nexo; ++e) start[e + 1] += start[e];
    {
      std::vector<int64_t> pos(start.begin(), start.end() - 1);
      for (int64_t n = 0; n < N; ++n) order[pos[sp[t * N + n]]++] = n;
    }
    items.clear();
    for (int64_t e = 0; e < nexo; ++e)
      for (int64_t i = start[e]; i < start[e + 1]; i += kChunk) items.emplace_back(i, std::min(i + kChunk, start[e + 1]));
    const int64_t nitems = static_cast<int64_t>(items.size());
    std::atomic<int64_t> next{0};
    at::parallel_for(0, std::min(nthreads, nitems), 1, [&](int64_t, int64_t) {
      FlushDenormals ftz;
      // local copies: loads through the closure inside the loops kept them from vectorising
      const T* __restrict bj = bj_;
      const T* __restrict yj = yj_;
      const T cmin = cmin_, blim = blim_, Bs = Bs_;
      std::vector<T> ex(nw), tau(nw), cv(J), hv(J), bn(J), u(J), wb(J), td(J), tg(J);
      std::vector<int32_t> lob(J);
      for (;;) {
        const int64_t it = next.fetch_add(1);
        if (it >= nitems) break;
        const int64_t s = sp[t * N + order[items[it].first]];
        const HankRows<T>& Rw = *rows[s];
        const T z = zg[s / c.nm];
        for (int64_t i = items[it].first; i < items[it].second; ++i) {
          const int64_t n = order[i];
          T* g = gp + n * J;
          T* d = dh + (t * N + n) * J;
          T debt = T(0), yg_sum = T(0);
#pragma omp simd reduction(+ : debt, yg_sum)
          for (int64_t j = 0; j < J; ++j) {
            debt += bj[j] * g[j];
            yg_sum += yj[j] * g[j];
          }
          // the schedule node by node from the lowest wage, stopping at the first upward crossing
          // (the bracket market.bracket picks); only without a crossing are all nodes needed
          auto node = [&](int64_t k) {
            const T *Ak = &Rw.A[k * J], *Bk = &Rw.By[k * J], *Lk = &Rw.Hy[k * J];
            T l = T(0), a = T(0), bsum = T(0);
#pragma omp simd reduction(+ : l, a, bsum)
            for (int64_t j = 0; j < J; ++j) {
              l += Lk[j] * g[j];
              a += Ak[j] * g[j];
              bsum += Bk[j] * g[j];
            }
            const T rk = Rw.r[k], wk = wg[k];
            const T tk = (l * (z * Rw.cost[k] - wk) - rk * debt - (debt - Bs)) / yg_sum;
            T Ck;
            if (tk >= Rw.tau_lo[k] && tk <= Rw.tau_hi[k]) {
              Ck = a + tk * bsum;
            } else {  // a clamp may bind: the exact sum
              const T *Sk = &Rw.S[k * J], *Hk = &Rw.H[k * J];
              const T Rk = T(1) + rk;
              Ck = T(0);
#pragma omp simd reduction(+ : Ck)
              for (int64_t j = 0; j < J; ++j) {
                const T cash = Rk * bj[j] + yj[j] * (wk * Hk[j] + tk);
                Ck += hank_consumption<T>(Sk[j], cash, cmin, blim) * g[j];
              }
            }
            tau[k] = tk;
            ex[k] = z * Rw.cost[k] * l - Ck;
          };
          int64_t lo = -1;
          T om;
          for (int64_t k = 0; k < nw; ++k) {
            node(k);
            if (k > 0 && ex[k - 1] < T(0) && !(ex[k] < T(0))) {
              lo = k - 1;
              break;
            }
          }
          if (lo >= 0) om = segment_weight<T>(ex[lo], ex[lo + 1], c.extrapolate);
          else bracket_extrapolate<T>(ex.data(), nw, c.extrapolate, lo, om);
          const T w0 = T(1) - om, w1 = om;
          const T *S0 = &Rw.S[lo * J], *S1 = S0 + J, *H0 = &Rw.H[lo * J], *H1 = H0 + J;
          const T R0 = T(1) + Rw.r[lo], R1 = T(1) + Rw.r[lo + 1], wa = wg[lo], wb_ = wg[lo + 1];
          const T t0 = tau[lo], t1 = tau[lo + 1];
          T *cp = cv.data(), *hp = hv.data(), *bp = bn.data(), *up = u.data();
#pragma omp simd
          for (int64_t j = 0; j < J; ++j) {
            const T cash0 = R0 * bj[j] + yj[j] * (wa * H0[j] + t0);
            const T cash1 = R1 * bj[j] + yj[j] * (wb_ * H1[j] + t1);
            const T c0 = hank_consumption<T>(S0[j], cash0, cmin, blim);
            const T c1 = hank_consumption<T>(S1[j], cash1, cmin, blim);
            const T cc = c0 * w0 + c1 * w1, hh = H0[j] * w0 + H1[j] * w1;
            cp[j] = cc;
            hp[j] = hh;
            bp[j] = (cash0 - c0) * w0 + (cash1 - c1) * w1;
          }
          hank_utility_row<T, false>(cp, hp, J, cmin, c.k_hours, up, nullptr, nullptr);
          total[n] += disc * dot<T>(d, up, J);
          T Lr = T(0), Cr = T(0), Br = T(0);
#pragma omp simd reduction(+ : Lr, Cr, Br)
          for (int64_t j = 0; j < J; ++j) {
            Lr += yj[j] * hp[j] * g[j];
            Cr += cp[j] * g[j];
            Br += bp[j] * g[j];
          }
          const T pi_star = Rw.pi[lo] * w0 + Rw.pi[lo + 1] * w1;
          lop[t * N + n] = lo;
          R_(0, t, n) = om;
          R_(1, t, n) = Rw.r[lo] * w0 + Rw.r[lo + 1] * w1;
          R_(2, t, n) = wa * w0 + wb_ * w1;
          R_(3, t, n) = pi_star;
          R_(4, t, n) = z;
          R_(5, t, n) = Lr;
          R_(6, t, n) = Cr;
          R_(7, t, n) = z * Lr;
          R_(8, t, n) = Br;
          R_(9, t, n) = (Br - Bs) / Bs;
          R_(10, t, n) = (Lr - Cr / (z * (T(1) - static_cast<T>(c.theta / 2) * (pi_star * pi_star)))) / Lr;
          T at_limit = T(0);
          for (int64_t yy = 0; yy < ny; ++yy) at_limit += g[yy];
          R_(11, t, n) = at_limit;
          R_(12, t, n) = Rw.r[lo];
          R_(13, t, n) = Rw.r[lo + 1];
          R_(14, t, n) = t0;
          R_(15, t, n) = t1;
          lottery_row<T, false>(loc, bp, J, lob.data(), wb.data(), nullptr);
          std::fill(td.begin(), td.end(), T(0));
          std::fill(tg.begin(), tg.end(), T(0));
          scatter2_row<T>(d, g, lob.data(), wb.data(), nb, ny, td.data(), tg.data());
          mix_forward<T>(tg.data(), P, nb, ny, g);
          if (t + 1 < T_) {
            mix_forward<T>(td.data(), P, nb, ny, dh + ((t + 1) * N + n) * J);
          } else if (Vt != nullptr) {  // d_T (into the spent utility row) meets the terminal value
            mix_forward<T>(td.data(), P, nb, ny, up);
            total[n] += betaT * dot<T>(up, Vt + n * J, J);
          }
        }
      }
    });
    disc *= c.beta;
  }
  for (int64_t n = 0; n < N; ++n) objp[n] = static_cast<T>(total[n]);
  return {obj, g_out, d_hist, lo_t, rec};
}

// Adjoint of hank_forward's household objective sum_t beta^t d_t . u_t with respect to the share and
// hours tables ([2, n_w, n_r, J]): the backward Bellman recursion of the Huggett and Krusell-Smith
// adjoints, with HANK._households' rule at the two wage nodes (hank_households' adjoint).
template <typename T>
Tensor hank_backward_impl(const Tensor& gobj, const Tensor& share, const Tensor& hours, const Tensor& w_grid,
                          const Tensor& b_j, const Tensor& y_j, const Tensor& s_path, const Tensor& d_hist,
                          const Tensor& lo_t, const Tensor& rec, const Tensor& P_y, const Tensor& b_grid,
                          const Tensor& lut, double bmin, double inv_h, const HankConsts& c, const Tensor& V) {
  const int64_t nw = share.size(0), nr = share.size(1), J = share.size(2);
  const int64_t T_ = d_hist.size(0), N = d_hist.size(1);
  const int64_t ny = P_y.size(0), nb = J / ny, table = nw * nr * J;
  const T *sh = share.data_ptr<T>(), *hr = hours.data_ptr<T>(), *wg = w_grid.data_ptr<T>(), *bj_ = b_j.data_ptr<T>(),
          *yj_ = y_j.data_ptr<T>(), *dh = d_hist.data_ptr<T>(), *rp = rec.data_ptr<T>(), *P = P_y.data_ptr<T>(),
          *go = gobj.data_ptr<T>();
  const int64_t* lop = lo_t.data_ptr<int64_t>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  const T cmin_ = static_cast<T>(c.c_min), blim_ = static_cast<T>(c.blim);
  auto R_ = [&](int64_t field, int64_t t, int64_t n) { return rp[(field * T_ + t) * N + n]; };
  const T* Vt = terminal_value<T>(V, N, J);
  const double betaT = std::pow(c.beta, static_cast<double>(T_));
  std::vector<double> disc(T_);
  for (int64_t t = 0; t < T_; ++t) disc[t] = std::pow(c.beta, static_cast<double>(t));
  std::vector<int32_t> yidx(J);
  for (int64_t j = 0; j < J; ++j) yidx[j] = static_cast<int32_t>(j % ny);
  Tensor grad = blocked_gradient<T>(N, 2 * table, share.options(), [&](T* G, int64_t n0, int64_t n1) {
    // local copies: loads through the closure inside the loops kept them from vectorising
    const T* __restrict bj = bj_;
    const T* __restrict yj = yj_;
    const T cmin = cmin_, blim = blim_;
    std::vector<T> lam(J), lam_new(J), V(J), cv(J), hv(J), bn(J), wb(J), dw(J), uv(J), ucv(J), unv(J);
    std::vector<int32_t> lob(J);
    const int32_t* yi = yidx.data();
    const int32_t ny32 = static_cast<int32_t>(ny);
    for (int64_t n = n0; n < n1; ++n) {
      terminal_adjoint<T>(lam, Vt == nullptr ? nullptr : Vt + n * J, betaT, go[n]);
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const int64_t lo = lop[t * N + n];
        const T om = R_(0, t, n), w0 = T(1) - om, w1 = om;
        const T r0 = R_(12, t, n), r1 = R_(13, t, n), t0 = R_(14, t, n), t1 = R_(15, t, n);
        int64_t l0, l1;
        T a0, a1;
        uniform_bracket<T>(r0, c.r_min, c.dr, nr, l0, a0);
        uniform_bracket<T>(r1, c.r_min, c.dr, nr, l1, a1);
        const int64_t o0 = (lo * nr + l0) * J, o1 = ((lo + 1) * nr + l1) * J;
        const T *S0 = sh + o0, *S1 = sh + o1, *H0 = hr + o0, *H1 = hr + o1;
        T *GS0 = G + o0, *GS1 = G + o1, *GH0 = G + table + o0, *GH1 = G + table + o1;
        const T R0 = T(1) + r0, R1 = T(1) + r1, wa = wg[lo], wb_ = wg[lo + 1];
        const T bt = static_cast<T>(disc[t] * static_cast<double>(go[n]));
        const T* d = dh + (t * N + n) * J;
        mix_backward<T>(lam.data(), P, nb, ny, V.data());
        T *cp = cv.data(), *hp = hv.data(), *bp = bn.data();
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          const T s0 = S0[j] * (T(1) - a0) + S0[J + j] * a0, h0 = H0[j] * (T(1) - a0) + H0[J + j] * a0;
          const T s1 = S1[j] * (T(1) - a1) + S1[J + j] * a1, h1 = H1[j] * (T(1) - a1) + H1[J + j] * a1;
          const T cash0 = R0 * bj[j] + yj[j] * (wa * h0 + t0);
          const T cash1 = R1 * bj[j] + yj[j] * (wb_ * h1 + t1);
          const T c0 = hank_consumption<T>(s0, cash0, cmin, blim);
          const T c1 = hank_consumption<T>(s1, cash1, cmin, blim);
          cp[j] = c0 * w0 + c1 * w1;
          hp[j] = h0 * w0 + h1 * w1;
          bp[j] = (cash0 - c0) * w0 + (cash1 - c1) * w1;
        }
        hank_utility_row<T, true>(cp, hp, J, cmin, c.k_hours, uv.data(), ucv.data(), unv.data());
        lottery_row<T, true>(loc, bp, J, lob.data(), wb.data(), dw.data());
        const T *Vp = V.data(), *wbp = wb.data(), *dwp = dw.data(), *up = uv.data(), *ucp = ucv.data(),
                *unp = unv.data();
        const int32_t* lb = lob.data();
        T* ln = lam_new.data();
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          const int32_t i0 = lb[j] * ny32 + yi[j];
          const T v0 = Vp[i0], v1 = Vp[i0 + ny32];
          ln[j] = bt * up[j] + (T(1) - wbp[j]) * v0 + wbp[j] * v1;
          const T gc = d[j] * bt * ucp[j], gn = d[j] * bt * unp[j], gb = d[j] * (v1 - v0) * dwp[j];
          const T s0 = S0[j] * (T(1) - a0) + S0[J + j] * a0, h0 = H0[j] * (T(1) - a0) + H0[J + j] * a0;
          const T s1 = S1[j] * (T(1) - a1) + S1[J + j] * a1, h1 = H1[j] * (T(1) - a1) + H1[J + j] * a1;
          const T cash0 = R0 * bj[j] + yj[j] * (wa * h0 + t0);
          const T cash1 = R1 * bj[j] + yj[j] * (wb_ * h1 + t1);
          T gs0, gn0, gs1, gn1;
          hank_node_adjoint<T>(s0, cash0, cmin, blim, yj[j], wa, (gc - gb) * w0, gb * w0, gn * w0, gs0, gn0);
          hank_node_adjoint<T>(s1, cash1, cmin, blim, yj[j], wb_, (gc - gb) * w1, gb * w1, gn * w1, gs1, gn1);
          GS0[j] += gs0 * (T(1) - a0);
          GS0[J + j] += gs0 * a0;
          GH0[j] += gn0 * (T(1) - a0);
          GH0[J + j] += gn0 * a0;
          GS1[j] += gs1 * (T(1) - a1);
          GS1[J + j] += gs1 * a1;
          GH1[j] += gn1 * (T(1) - a1);
          GH1[J + j] += gn1 * a1;
        }
        std::swap(lam, lam_new);
      }
    }
  });
  return grad.view({2, nw, nr, J});
}

}  // namespace

std::vector<Tensor> huggett_forward(Tensor B, Tensor cash, Tensor r_grid, Tensor s_path, Tensor g0,
                                    Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h,
                                    Tensor y_j, int64_t T_, double beta, double crra, double c_min,
                                    double bond_supply, bool partial, bool evolve_g, bool record,
                                    Tensor d_hist, Tensor V, Tensor lags0, std::vector<double> lag_grid) {
  check_cpu({B, cash, r_grid, s_path, g0, P_y, b_grid, lut, y_j, lags0});
  TORCH_CHECK(lags0.scalar_type() == B.scalar_type(), "lags: the table's dtype");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(B.scalar_type(), "huggett_forward", [&] {
    out = huggett_forward_impl<scalar_t>(B, cash, r_grid, s_path, g0, P_y, b_grid, lut, bmin, inv_h, y_j, T_,
                                         beta, crra, c_min, bond_supply, partial, evolve_g, record, d_hist,
                                         V, lags0, lag_grid);
  });
  return out;
}

Tensor huggett_backward(Tensor gobj, Tensor B, Tensor cash, Tensor d_hist, Tensor zi_t, Tensor lo_r, Tensor w_r,
                        Tensor r_t, Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, double beta,
                        double crra, double c_min, Tensor V, Tensor lags0, std::vector<double> lag_grid) {
  check_cpu({gobj, B, cash, d_hist, zi_t, lo_r, w_r, r_t, P_y, b_grid, lut, lags0});
  TORCH_CHECK(lags0.scalar_type() == B.scalar_type(), "lags: the table's dtype");
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(B.scalar_type(), "huggett_backward", [&] {
    out = huggett_backward_impl<scalar_t>(gobj, B, cash, d_hist, zi_t, lo_r, w_r, r_t, P_y, b_grid, lut, bmin,
                                          inv_h, beta, crra, c_min, V, lags0, lag_grid);
  });
  return out;
}

std::vector<Tensor> ks_forward(Tensor share, Tensor b_j, Tensor y_j, Tensor z_grid, Tensor s_path, Tensor g0,
                               Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, int64_t T_,
                               double beta, double crra, double c_min, double borrowing_limit, double alpha,
                               double delta, double r_min, double dr, double w_min, double dw_step, bool record,
                               Tensor d_hist, Tensor V, Tensor lags0, std::vector<double> lag_grid) {
  check_cpu({share, b_j, y_j, z_grid, s_path, g0, P_y, b_grid, lut, lags0});
  TORCH_CHECK(lags0.scalar_type() == share.scalar_type(), "lags: the table's dtype");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "ks_forward", [&] {
    out = ks_forward_impl<scalar_t>(share, b_j, y_j, z_grid, s_path, g0, P_y, b_grid, lut, bmin, inv_h, T_, beta,
                                    crra, c_min, borrowing_limit, alpha, delta, r_min, dr, w_min, dw_step, record,
                                    d_hist, V, lags0, lag_grid);
  });
  return out;
}

Tensor ks_backward(Tensor gobj, Tensor share, Tensor b_j, Tensor y_j, Tensor d_hist, Tensor r_t, Tensor w_t,
                   Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, double beta, double crra,
                   double c_min, double borrowing_limit, double r_min, double dr, double w_min, double dw_step,
                   Tensor V, Tensor lags0, std::vector<double> lag_grid) {
  check_cpu({gobj, share, b_j, y_j, d_hist, r_t, w_t, P_y, b_grid, lut, lags0});
  TORCH_CHECK(lags0.scalar_type() == share.scalar_type(), "lags: the table's dtype");
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "ks_backward", [&] {
    out = ks_backward_impl<scalar_t>(gobj, share, b_j, y_j, d_hist, r_t, w_t, P_y, b_grid, lut, bmin, inv_h, beta,
                                     crra, c_min, borrowing_limit, r_min, dr, w_min, dw_step, V, lags0, lag_grid);
  });
  return out;
}

std::vector<Tensor> hank_clearing(Tensor share, Tensor hours, Tensor lo_r, Tensor a_r, Tensor r_k, Tensor cost_k,
                                  Tensor z, Tensor g, Tensor y_j, Tensor b_j, Tensor w_grid, double bond_supply,
                                  double c_min, double borrowing_limit) {
  check_cpu({share, hours, lo_r, a_r, r_k, cost_k, z, g, y_j, b_j, w_grid});
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "hank_clearing", [&] {
    out = hank_clearing_impl<scalar_t>(share, hours, lo_r, a_r, r_k, cost_k, z, g, y_j, b_j, w_grid, bond_supply,
                                       c_min, borrowing_limit);
  });
  return out;
}

std::vector<Tensor> hank_households(Tensor share, Tensor hours, Tensor row, Tensor a_r, Tensor wts, Tensor R2,
                                    Tensor w2, Tensor tau2, Tensor b_j, Tensor y_j, double c_min,
                                    double borrowing_limit, std::vector<Tensor> grads) {
  check_cpu({share, hours, row, a_r, wts, R2, w2, tau2, b_j, y_j});
  check_cpu(grads);
  TORCH_CHECK(grads.empty() || grads.size() == 3, "hank_households: pass no gradients or three");
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "hank_households", [&] {
    out = hank_households_impl<scalar_t>(share, hours, row, a_r, wts, R2, w2, tau2, b_j, y_j, c_min,
                                         borrowing_limit, grads.empty() ? nullptr : grads.data());
  });
  return out;
}

HankConsts hank_consts(const std::vector<double>& v) {
  TORCH_CHECK(v.size() == 13, "hank: 13 constants expected");
  return HankConsts{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                    static_cast<int64_t>(v[11]), static_cast<int64_t>(v[12])};
}

// consts: beta, 1 + 1/frisch, c_min, borrowing_limit, bond_supply, theta, R_bar, phi_pi, r_min, dr,
// w_extrapolate, n_z, n_m
std::vector<Tensor> hank_forward(Tensor share, Tensor hours, Tensor Pi, Tensor m_grid, Tensor z_grid, Tensor w_grid,
                                 Tensor b_j, Tensor y_j, Tensor s_path, Tensor g0, Tensor P_y, Tensor b_grid,
                                 Tensor lut, double bmin, double inv_h, int64_t T_, std::vector<double> consts,
                                 Tensor d_hist, Tensor V) {
  check_cpu({share, hours, Pi, m_grid, z_grid, w_grid, b_j, y_j, s_path, g0, P_y, b_grid, lut});
  const HankConsts c = hank_consts(consts);
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "hank_forward", [&] {
    out = hank_forward_impl<scalar_t>(share, hours, Pi, m_grid, z_grid, w_grid, b_j, y_j, s_path, g0, P_y, b_grid,
                                      lut, bmin, inv_h, T_, c, d_hist, V);
  });
  return out;
}

Tensor hank_backward(Tensor gobj, Tensor share, Tensor hours, Tensor w_grid, Tensor b_j, Tensor y_j, Tensor s_path,
                     Tensor d_hist, Tensor lo_t, Tensor rec, Tensor P_y, Tensor b_grid, Tensor lut, double bmin,
                     double inv_h, std::vector<double> consts, Tensor V) {
  check_cpu({gobj, share, hours, w_grid, b_j, y_j, s_path, d_hist, lo_t, rec, P_y, b_grid, lut});
  const HankConsts c = hank_consts(consts);
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "hank_backward", [&] {
    out = hank_backward_impl<scalar_t>(gobj, share, hours, w_grid, b_j, y_j, s_path, d_hist, lo_t, rec, P_y, b_grid,
                                       lut, bmin, inv_h, c, V);
  });
  return out;
}

// Markov chain paths: row t of the result [T, N] is the state at t; the next state is the first node
// whose cumulative probability (cum [n, n], rows ending above 1) reaches the uniform draw u [T, N],
// which is what torch.searchsorted returns (grids.simulate_chain's torch loop is the definition).
Tensor simulate_chain(Tensor cum, Tensor start, Tensor u) {
  check_cpu({cum, start, u});
  TORCH_CHECK(cum.scalar_type() == at::kDouble && u.scalar_type() == at::kDouble && start.scalar_type() == at::kLong &&
                  cum.dim() == 2 && cum.size(0) == cum.size(1) && u.dim() == 2 && start.dim() == 1 &&
                  u.size(1) == start.size(0),
              "simulate_chain: cum [n, n] and u [T, N] float64, start [N] int64");
  const Tensor c = cum.contiguous(), uu = u.contiguous(), s0 = start.contiguous();
  const int64_t n = c.size(0), T_ = uu.size(0), N = uu.size(1);
  Tensor out = at::empty({T_, N}, s0.options());
  const double* cp = c.data_ptr<double>();
  const double* up = uu.data_ptr<double>();
  const int64_t* sp = s0.data_ptr<int64_t>();
  int64_t* op = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i) TORCH_CHECK(sp[i] >= 0 && sp[i] < n, "simulate_chain: start state out of range");
  for (int64_t k = 0; k < N; ++k) {
    int64_t state = sp[k];
    for (int64_t t = 0; t < T_; ++t) {
      op[t * N + k] = state;
      const double* row = cp + state * n;
      const double x = up[t * N + k];
      int64_t next = 0;
      while (next < n && row[next] < x) ++next;
      state = std::min(next, n - 1);
    }
  }
  return out;
}

// The kernels' Young lottery of b' [M] (lo, weight on lo + 1, d weight / d b'), exposed for tests
// against distribution.lottery: float rows of 8 take the AVX2 path, the rest the scalar loop.
std::vector<Tensor> lottery(Tensor b_next, Tensor b_grid, Tensor lut, double bmin, double inv_h) {
  check_cpu({b_next, b_grid, lut});
  TORCH_CHECK(b_next.dim() == 1 && b_next.scalar_type() == b_grid.scalar_type(), "lottery: b_next [M] of the grid's dtype");
  const Tensor bn = b_next.contiguous(), grid = b_grid.contiguous(), tab = lut.contiguous();
  const int64_t M = bn.numel();
  Tensor lo = at::empty({M}, bn.options().dtype(at::kInt)), w = at::empty_like(bn), dw = at::empty_like(bn);
  AT_DISPATCH_FLOATING_TYPES(bn.scalar_type(), "lottery", [&] {
    const Locator<scalar_t> loc = make_locator<scalar_t>(grid, tab, bmin, inv_h);
    lottery_row<scalar_t, true>(loc, bn.data_ptr<scalar_t>(), M, lo.data_ptr<int32_t>(), w.data_ptr<scalar_t>(),
                                dw.data_ptr<scalar_t>());
  });
  return {lo, w, dw};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("huggett_forward", &huggett_forward, "Huggett rollout, all paths (CPU)");
  m.def("huggett_backward", &huggett_backward, "adjoint of huggett_forward: gradient wrt the savings table");
  m.def("ks_forward", &ks_forward, "Krusell-Smith rollout, all paths (CPU)");
  m.def("ks_backward", &ks_backward, "adjoint of ks_forward: gradient wrt the share table");
  m.def("hank_forward", &hank_forward, "HANK household rollout, all paths, period-major (CPU)");
  m.def("hank_backward", &hank_backward, "adjoint of hank_forward: gradient wrt the share and hours tables");
  m.def("hank_households", &hank_households, "HANK households at the bracketing w nodes, or its adjoint (CPU)");
  m.def("lottery", &lottery, "the kernels' Young lottery of a vector of b' (CPU; for tests)");
  m.def("simulate_chain", &simulate_chain, "Markov chain paths from uniform draws (CPU)");
  m.def("hank_clearing", &hank_clearing, "HANK clearing schedule: L, C, tau at every path and w node (CPU)");
}
