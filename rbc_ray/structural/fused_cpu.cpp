// SRL rollouts fused per simulated path, for CPU (rbc_ray/structural/fused.py loads and wraps it).
//
// Same maths and order of events as the torch rollouts in huggett.py and krusell_smith.py, which stay
// the definition (and the GPU path); tests hold the objective and its gradient to torch autograd.
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
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using at::Tensor;

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

// Bracket of b on the asset grid: lo = last node <= b (clamped to [0, nb-2]) from a uniform look-up
// table of bucket width <= the smallest grid step, then corrected against the grid (exact).
template <typename T>
struct Locator {
  const T* grid;
  const int32_t* lut;
  int64_t nb, nlut;
  double bmin, inv_h;
  inline int64_t operator()(T b) const {
    double x = (static_cast<double>(b) - bmin) * inv_h;
    int64_t k = x <= 0.0 ? 0 : static_cast<int64_t>(x);
    if (k >= nlut) k = nlut - 1;
    int64_t lo = lut[k];
    while (lo < nb - 2 && b >= grid[lo + 1]) ++lo;
    while (lo > 0 && b < grid[lo]) --lo;
    return lo;
  }
};

// Young's lottery for state j with savings bn: (lo, weight on lo+1, d weight / d bn).
template <typename T>
inline void lottery(const Locator<T>& loc, T bn, int64_t& lo, T& w, T& dw) {
  const T b0 = loc.grid[0], b1 = loc.grid[loc.nb - 1];
  const T bc = bn < b0 ? b0 : (bn > b1 ? b1 : bn);
  lo = loc(bc);
  const T left = loc.grid[lo], h = loc.grid[lo + 1] - left;
  const T raw = (bc - left) / h;
  w = raw < T(0) ? T(0) : (raw > T(1) ? T(1) : raw);
  dw = (bn >= b0 && bn <= b1 && raw >= T(0) && raw <= T(1)) ? T(1) / h : T(0);
}

// out[b, y'] = sum_y tmp[b, y] P[y, y'] (the income transition after the asset lottery).
template <typename T>
inline void mix_forward(const T* tmp, const T* P, int64_t nb, int64_t ny, T* out) {
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

// V[b, y] = sum_y' P[y, y'] lam[b, y'] (adjoint of mix_forward).
template <typename T>
inline void mix_backward(const T* lam, const T* P, int64_t nb, int64_t ny, T* V) {
  for (int64_t b = 0; b < nb; ++b) {
    const T* src = lam + b * ny;
    T* dst = V + b * ny;
    for (int64_t y = 0; y < ny; ++y) {
      T acc = 0;
      for (int64_t y2 = 0; y2 < ny; ++y2) acc += P[y * ny + y2] * src[y2];
      dst[y] = acc;
    }
  }
}

// Clearing by interpolation on the price grid (market.bracket with extrapolate = 0): the first
// upward crossing of the target, else the end segment nearest it.
inline void bracket(const double* S, int64_t K, double target, int64_t& lo, double& w) {
  int64_t n_below = 0, first = -1;
  for (int64_t k = 0; k < K; ++k) n_below += (S[k] - target) < 0.0;
  for (int64_t k = 0; k + 1 < K; ++k) {
    if ((S[k] - target) < 0.0 && !((S[k + 1] - target) < 0.0)) { first = k; break; }
  }
  lo = first >= 0 ? first : std::min<int64_t>(std::max<int64_t>(n_below - 1, 0), K - 2);
  const double e_lo = S[lo] - target, e_hi = S[lo + 1] - target, denom = e_hi - e_lo;
  w = denom != 0.0 ? -e_lo / denom : 0.0;
  if (n_below == K) w = std::max(w, 1.0);
  if (n_below == 0) w = std::min(w, 0.0);
  if (!std::isfinite(w)) w = 0.0;
  w = std::min(std::max(w, 0.0), 1.0);
}

template <typename T>
Locator<T> make_locator(const Tensor& grid, const Tensor& lut, double bmin, double inv_h) {
  return Locator<T>{grid.data_ptr<T>(), lut.data_ptr<int32_t>(), grid.numel(), lut.numel(), bmin, inv_h};
}

// ------------------------------------------------------------------------------------------ Huggett
// B [nz, nr, J] savings b' at every node; cash [nz, J]; s_path [T(+1), N] aggregate state per period
// (z node, or r node in partial equilibrium); g0 [N, J]. Returns
//   obj [N] (sum_t beta^t d_t . u_t), g_T [N, J], d_hist [T, N, J], zi/lo_r [T, N] (long), w_r, r,
//   and records resid, B (demand), C, Ey, at_limit [T, N] (zeros unless record).
template <typename T>
std::vector<Tensor> huggett_forward_impl(const Tensor& B, const Tensor& cash, const Tensor& r_grid,
                                         const Tensor& s_path, const Tensor& g0, const Tensor& P_y,
                                         const Tensor& b_grid, const Tensor& lut, double bmin, double inv_h,
                                         const Tensor& y_j, int64_t T_, double beta, double crra,
                                         double c_min, double bond_supply, bool partial, bool evolve_g,
                                         bool record) {
  const int64_t nz = B.size(0), nr = B.size(1), J = B.size(2), N = g0.size(0);
  const int64_t ny = P_y.size(0), nb = J / ny;
  auto opts = g0.options();
  Tensor g_out = g0.clone();
  Tensor d_hist = at::empty({T_, N, J}, opts);
  Tensor obj = at::zeros({N}, opts);
  Tensor lo_r = at::empty({T_, N}, s_path.options());
  Tensor zi_t = at::empty({T_, N}, s_path.options());
  Tensor w_r = at::empty({T_, N}, opts), r_t = at::empty({T_, N}, opts);
  const int64_t nrec = record ? T_ : 0;
  Tensor resid = at::zeros({T_, N}, opts);
  Tensor rec = at::zeros({4, nrec, N}, opts);  // demand, C, Ey, at_limit
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
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> d(J), tg(J), td(J);
    std::vector<double> S(nr);
    for (int64_t n = n0; n < n1; ++n) {
      T* g = gp + n * J;
      std::fill(d.begin(), d.end(), T(1) / T(J));
      double disc = 1.0, total = 0.0;
      for (int64_t t = 0; t < T_; ++t) {
        const int64_t s = sp[t * N + n];
        int64_t zi, lr;
        double wr;
        if (partial) {
          zi = 0;
          lr = std::min<int64_t>(s, nr - 2);
          wr = s == nr - 1 ? 1.0 : 0.0;
        } else {
          zi = s;
          const T* Bz = Bp + zi * nr * J;
          for (int64_t k = 0; k < nr; ++k) {
            const T* row = Bz + k * J;
            double acc = 0.0;
            for (int64_t j = 0; j < J; ++j) acc += static_cast<double>(row[j] * g[j]);
            S[k] = acc;
          }
          bracket(S.data(), nr, bond_supply, lr, wr);
        }
        const T w = static_cast<T>(wr);
        const T r = rg[lr] * (T(1) - w) + rg[lr + 1] * w;
        const T q = T(1) / (T(1) + r);
        zip[t * N + n] = zi;
        lop[t * N + n] = lr;
        wp[t * N + n] = w;
        rp[t * N + n] = r;
        std::memcpy(dh + (t * N + n) * J, d.data(), J * sizeof(T));
        const T* B0 = Bp + (zi * nr + lr) * J;
        const T* B1 = B0 + J;
        const T* cz = cashp + zi * J;
        std::fill(tg.begin(), tg.end(), T(0));
        std::fill(td.begin(), td.end(), T(0));
        double ut = 0.0, demand = 0.0, C = 0.0, Ey = 0.0;
        for (int64_t j = 0; j < J; ++j) {
          const int64_t y = j % ny;
          const T bn = B0[j] * (T(1) - w) + B1[j] * w;
          const T c = cz[j] - bn * q;
          T u, mu;
          crra_u<T>(c < cmin ? cmin : c, crra, u, mu);
          ut += static_cast<double>(d[j] * u);
          int64_t lo;
          T wb, dw;
          lottery<T>(loc, bn, lo, wb, dw);
          const int64_t i0 = lo * ny + y, i1 = i0 + ny;
          td[i0] += d[j] * (T(1) - wb);
          td[i1] += d[j] * wb;
          if (evolve_g) {
            demand += static_cast<double>(bn * g[j]);
            if (record) {
              C += static_cast<double>(c * g[j]);
              Ey += static_cast<double>(yj[j] * g[j]);
            }
            tg[i0] += g[j] * (T(1) - wb);
            tg[i1] += g[j] * wb;
          }
        }
        total += disc * ut;
        disc *= beta;
        resp[t * N + n] = static_cast<T>(demand - (partial ? 0.0 : bond_supply));
        if (record) {
          T at_limit = 0;
          for (int64_t y = 0; y < ny; ++y) at_limit += g[y];
          recp[(0 * nrec + t) * N + n] = static_cast<T>(demand);
          recp[(1 * nrec + t) * N + n] = static_cast<T>(C);
          recp[(2 * nrec + t) * N + n] = static_cast<T>(Ey);
          recp[(3 * nrec + t) * N + n] = at_limit;
        }
        mix_forward<T>(td.data(), P, nb, ny, d.data());
        if (evolve_g) mix_forward<T>(tg.data(), P, nb, ny, g);
      }
      objp[n] = static_cast<T>(total);
    }
  });
  return {obj, g_out, d_hist, zi_t, lo_r, w_r, r_t, resid, rec};
}

template <typename T>
Tensor huggett_backward_impl(const Tensor& gobj, const Tensor& B, const Tensor& cash, const Tensor& d_hist,
                             const Tensor& zi_t, const Tensor& lo_r, const Tensor& w_r, const Tensor& r_t,
                             const Tensor& P_y, const Tensor& b_grid, const Tensor& lut, double bmin,
                             double inv_h, double beta, double crra, double c_min) {
  const int64_t nz = B.size(0), nr = B.size(1), J = B.size(2);
  const int64_t T_ = d_hist.size(0), N = d_hist.size(1);
  const int64_t ny = P_y.size(0), nb = J / ny;
  const int64_t nthreads = at::get_num_threads();
  Tensor acc = at::zeros({nthreads, nz * nr * J}, B.options());
  const T* Bp = B.data_ptr<T>();
  const T* cashp = cash.data_ptr<T>();
  const T* dh = d_hist.data_ptr<T>();
  const int64_t* zip = zi_t.data_ptr<int64_t>();
  const int64_t* lop = lo_r.data_ptr<int64_t>();
  const T* wp = w_r.data_ptr<T>();
  const T* rp = r_t.data_ptr<T>();
  const T* P = P_y.data_ptr<T>();
  const T* go = gobj.data_ptr<T>();
  T* accp = acc.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  const T cmin = static_cast<T>(c_min);
  std::vector<double> disc(T_);
  for (int64_t t = 0; t < T_; ++t) disc[t] = std::pow(beta, static_cast<double>(t));
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    T* grad = accp + at::get_thread_num() * nz * nr * J;
    std::vector<T> lam(J), lam_new(J), V(J);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(lam.begin(), lam.end(), T(0));
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const int64_t zi = zip[t * N + n], lr = lop[t * N + n];
        const T w = wp[t * N + n], r = rp[t * N + n];
        const T q = T(1) / (T(1) + r);
        const T bt = static_cast<T>(disc[t] * static_cast<double>(go[n]));
        mix_backward<T>(lam.data(), P, nb, ny, V.data());
        const T* B0 = Bp + (zi * nr + lr) * J;
        const T* B1 = B0 + J;
        T* G0 = grad + (zi * nr + lr) * J;
        T* G1 = G0 + J;
        const T* cz = cashp + zi * J;
        const T* d = dh + (t * N + n) * J;
        for (int64_t j = 0; j < J; ++j) {
          const int64_t y = j % ny;
          const T bn = B0[j] * (T(1) - w) + B1[j] * w;
          const T c = cz[j] - bn * q;
          T u, mu;
          crra_u<T>(c < cmin ? cmin : c, crra, u, mu);
          if (c < cmin) mu = 0;
          int64_t lo;
          T wb, dw;
          lottery<T>(loc, bn, lo, wb, dw);
          const T v0 = V[lo * ny + y], v1 = V[(lo + 1) * ny + y];
          lam_new[j] = bt * u + (T(1) - wb) * v0 + wb * v1;
          const T gb = d[j] * (-bt * mu * q + (v1 - v0) * dw);
          G0[j] += (T(1) - w) * gb;
          G1[j] += w * gb;
        }
        std::swap(lam, lam_new);
      }
    }
  });
  return acc.sum(0).view({nz, nr, J});
}

// ------------------------------------------------------------------------------------ Krusell-Smith
// share [nw, nr, J] consumption share; b_j, y_j [J]; z_grid [nz]; s_path [T(+1), N] TFP nodes.
// Returns obj [N], g_T, d_hist [T, N, J], r, w [T, N], and records K, C, resid, at_limit [T, N].
template <typename T>
std::vector<Tensor> ks_forward_impl(const Tensor& share, const Tensor& b_j, const Tensor& y_j,
                                    const Tensor& z_grid, const Tensor& s_path, const Tensor& g0,
                                    const Tensor& P_y, const Tensor& b_grid, const Tensor& lut, double bmin,
                                    double inv_h, int64_t T_, double beta, double crra, double c_min,
                                    double borrowing_limit, double alpha, double delta, double r_min,
                                    double dr, double w_min, double dw_step, bool record) {
  const int64_t nw = share.size(0), nr = share.size(1), J = share.size(2), N = g0.size(0);
  const int64_t ny = P_y.size(0), nb = J / ny;
  auto opts = g0.options();
  Tensor g_out = g0.clone();
  Tensor d_hist = at::empty({T_, N, J}, opts);
  Tensor obj = at::zeros({N}, opts);
  Tensor r_t = at::empty({T_, N}, opts), w_t = at::empty({T_, N}, opts);
  Tensor resid = at::zeros({T_, N}, opts);
  const int64_t nrec = record ? T_ : 0;
  Tensor rec = at::zeros({3, nrec, N}, opts);  // K, C, at_limit
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
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> d(J), tg(J), td(J);
    for (int64_t n = n0; n < n1; ++n) {
      T* g = gp + n * J;
      std::fill(d.begin(), d.end(), T(1) / T(J));
      double disc = 1.0, total = 0.0;
      for (int64_t t = 0; t < T_; ++t) {
        const T z = zg[sp[t * N + n]];
        T K = 0;
        for (int64_t j = 0; j < J; ++j) K += bj[j] * g[j];
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
        std::fill(tg.begin(), tg.end(), T(0));
        std::fill(td.begin(), td.end(), T(0));
        double ut = 0.0, savings = 0.0, C = 0.0;
        for (int64_t j = 0; j < J; ++j) {
          const int64_t y = j % ny;
          const T s_lo = S00[j] * (T(1) - ar) + S01[j] * ar;
          const T s_hi = S10[j] * (T(1) - ar) + S11[j] * ar;
          const T s = s_lo * (T(1) - aw) + s_hi * aw;
          const T cash = (T(1) + r) * bj[j] + wage * yj[j];
          T c = s * cash;
          c = c < cmin ? cmin : c;
          c = std::min(c, cash - bl);
          const T kn = cash - c;
          T u, mu;
          crra_u<T>(c, crra, u, mu);
          ut += static_cast<double>(d[j] * u);
          savings += static_cast<double>(kn * g[j]);
          if (record) C += static_cast<double>(c * g[j]);
          int64_t lo;
          T wb, dwb;
          lottery<T>(loc, kn, lo, wb, dwb);
          const int64_t i0 = lo * ny + y, i1 = i0 + ny;
          td[i0] += d[j] * (T(1) - wb);
          td[i1] += d[j] * wb;
          tg[i0] += g[j] * (T(1) - wb);
          tg[i1] += g[j] * wb;
        }
        total += disc * ut;
        disc *= beta;
        T at_limit = 0;
        if (record) for (int64_t y = 0; y < ny; ++y) at_limit += g[y];
        mix_forward<T>(td.data(), P, nb, ny, d.data());
        mix_forward<T>(tg.data(), P, nb, ny, g);
        double K1 = 0.0;
        for (int64_t j = 0; j < J; ++j) K1 += static_cast<double>(bj[j] * g[j]);
        resp[t * N + n] = static_cast<T>(K1 - savings);
        if (record) {
          recp[(0 * nrec + t) * N + n] = K;
          recp[(1 * nrec + t) * N + n] = static_cast<T>(C);
          recp[(2 * nrec + t) * N + n] = at_limit;
        }
      }
      objp[n] = static_cast<T>(total);
    }
  });
  return {obj, g_out, d_hist, r_t, w_t, resid, rec};
}

template <typename T>
Tensor ks_backward_impl(const Tensor& gobj, const Tensor& share, const Tensor& b_j, const Tensor& y_j,
                        const Tensor& d_hist, const Tensor& r_t, const Tensor& w_t, const Tensor& P_y,
                        const Tensor& b_grid, const Tensor& lut, double bmin, double inv_h, double beta,
                        double crra, double c_min, double borrowing_limit, double r_min, double dr,
                        double w_min, double dw_step) {
  const int64_t nw = share.size(0), nr = share.size(1), J = share.size(2);
  const int64_t T_ = d_hist.size(0), N = d_hist.size(1);
  const int64_t ny = P_y.size(0), nb = J / ny;
  const int64_t nthreads = at::get_num_threads();
  Tensor acc = at::zeros({nthreads, nw * nr * J}, share.options());
  const T* sh = share.data_ptr<T>();
  const T* bj = b_j.data_ptr<T>();
  const T* yj = y_j.data_ptr<T>();
  const T* dh = d_hist.data_ptr<T>();
  const T* rp = r_t.data_ptr<T>();
  const T* wpp = w_t.data_ptr<T>();
  const T* P = P_y.data_ptr<T>();
  const T* go = gobj.data_ptr<T>();
  T* accp = acc.data_ptr<T>();
  const Locator<T> loc = make_locator<T>(b_grid, lut, bmin, inv_h);
  const T cmin = static_cast<T>(c_min), bl = static_cast<T>(borrowing_limit);
  std::vector<double> disc(T_);
  for (int64_t t = 0; t < T_; ++t) disc[t] = std::pow(beta, static_cast<double>(t));
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    T* grad = accp + at::get_thread_num() * nw * nr * J;
    std::vector<T> lam(J), lam_new(J), V(J);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(lam.begin(), lam.end(), T(0));
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
        T *G00 = grad + o00, *G01 = G00 + J, *G10 = grad + o10, *G11 = G10 + J;
        const T bt = static_cast<T>(disc[t] * static_cast<double>(go[n]));
        mix_backward<T>(lam.data(), P, nb, ny, V.data());
        const T* d = dh + (t * N + n) * J;
        for (int64_t j = 0; j < J; ++j) {
          const int64_t y = j % ny;
          const T s_lo = S00[j] * (T(1) - ar) + S01[j] * ar;
          const T s_hi = S10[j] * (T(1) - ar) + S11[j] * ar;
          const T s = s_lo * (T(1) - aw) + s_hi * aw;
          const T cash = (T(1) + r) * bj[j] + wage * yj[j];
          const T c0 = s * cash;
          const T c1 = c0 < cmin ? cmin : c0;
          const T cap = cash - bl;
          const T c = std::min(c1, cap);
          const T dc = (c0 >= cmin && c1 < cap) ? cash : (c1 == cap && c0 >= cmin ? T(0.5) * cash : T(0));
          const T kn = cash - c;
          T u, mu;
          crra_u<T>(c, crra, u, mu);
          int64_t lo;
          T wb, dwb;
          lottery<T>(loc, kn, lo, wb, dwb);
          const T v0 = V[lo * ny + y], v1 = V[(lo + 1) * ny + y];
          lam_new[j] = bt * u + (T(1) - wb) * v0 + wb * v1;
          const T gs = d[j] * (bt * mu - (v1 - v0) * dwb) * dc;
          G00[j] += c00 * gs;
          G01[j] += c01 * gs;
          G10[j] += c10 * gs;
          G11[j] += c11 * gs;
        }
        std::swap(lam, lam_new);
      }
    }
  });
  return acc.sum(0).view({nw, nr, J});
}

void check_cpu(const std::vector<Tensor>& ts) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu(), "srl fused kernels run on CPU tensors only");
    TORCH_CHECK(t.is_contiguous(), "srl fused kernels need contiguous tensors");
  }
}

}  // namespace

std::vector<Tensor> huggett_forward(Tensor B, Tensor cash, Tensor r_grid, Tensor s_path, Tensor g0,
                                    Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h,
                                    Tensor y_j, int64_t T_, double beta, double crra, double c_min,
                                    double bond_supply, bool partial, bool evolve_g, bool record) {
  check_cpu({B, cash, r_grid, s_path, g0, P_y, b_grid, lut, y_j});
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(B.scalar_type(), "huggett_forward", [&] {
    out = huggett_forward_impl<scalar_t>(B, cash, r_grid, s_path, g0, P_y, b_grid, lut, bmin, inv_h, y_j, T_,
                                         beta, crra, c_min, bond_supply, partial, evolve_g, record);
  });
  return out;
}

Tensor huggett_backward(Tensor gobj, Tensor B, Tensor cash, Tensor d_hist, Tensor zi_t, Tensor lo_r, Tensor w_r,
                        Tensor r_t, Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, double beta,
                        double crra, double c_min) {
  check_cpu({gobj, B, cash, d_hist, zi_t, lo_r, w_r, r_t, P_y, b_grid, lut});
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(B.scalar_type(), "huggett_backward", [&] {
    out = huggett_backward_impl<scalar_t>(gobj, B, cash, d_hist, zi_t, lo_r, w_r, r_t, P_y, b_grid, lut, bmin,
                                          inv_h, beta, crra, c_min);
  });
  return out;
}

std::vector<Tensor> ks_forward(Tensor share, Tensor b_j, Tensor y_j, Tensor z_grid, Tensor s_path, Tensor g0,
                               Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, int64_t T_,
                               double beta, double crra, double c_min, double borrowing_limit, double alpha,
                               double delta, double r_min, double dr, double w_min, double dw_step, bool record) {
  check_cpu({share, b_j, y_j, z_grid, s_path, g0, P_y, b_grid, lut});
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "ks_forward", [&] {
    out = ks_forward_impl<scalar_t>(share, b_j, y_j, z_grid, s_path, g0, P_y, b_grid, lut, bmin, inv_h, T_, beta,
                                    crra, c_min, borrowing_limit, alpha, delta, r_min, dr, w_min, dw_step, record);
  });
  return out;
}

Tensor ks_backward(Tensor gobj, Tensor share, Tensor b_j, Tensor y_j, Tensor d_hist, Tensor r_t, Tensor w_t,
                   Tensor P_y, Tensor b_grid, Tensor lut, double bmin, double inv_h, double beta, double crra,
                   double c_min, double borrowing_limit, double r_min, double dr, double w_min, double dw_step) {
  check_cpu({gobj, share, b_j, y_j, d_hist, r_t, w_t, P_y, b_grid, lut});
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(share.scalar_type(), "ks_backward", [&] {
    out = ks_backward_impl<scalar_t>(gobj, share, b_j, y_j, d_hist, r_t, w_t, P_y, b_grid, lut, bmin, inv_h, beta,
                                     crra, c_min, borrowing_limit, r_min, dr, w_min, dw_step);
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("huggett_forward", &huggett_forward, "Huggett rollout, all paths (CPU)");
  m.def("huggett_backward", &huggett_backward, "adjoint of huggett_forward: gradient wrt the savings table");
  m.def("ks_forward", &ks_forward, "Krusell-Smith rollout, all paths (CPU)");
  m.def("ks_backward", &ks_backward, "adjoint of ks_forward: gradient wrt the share table");
}
