// Runs the kernels' own code (flash_tc.cuh, flash_simt.cuh) on the host, to check its indexing, pipeline,
// masking and softmax without a GPU. Each block's threads are std::threads; __syncthreads, warp
// shuffles, ldmatrix, mma.sync and cp.async are emulated from their PTX definitions:
// - cp.async copies are deferred until the cp.async.wait_group that covers them (a missing wait or
//   barrier then reads stale shared memory);
// - shared memory starts as 0xFF bytes (NaN in bf16 / fp16), so a read of an unwritten element poisons
//   the output;
// - ldmatrix (.trans) and mma.m16n8k16 gather the warp's registers and use the fragment layouts of the
//   PTX ISA (matrix fragments for mma.m16n8k16 with .bf16/.f16; ldmatrix thread-to-row mapping).
// What this cannot check: that the hardware agrees with these layouts (that is the device check's job),
// timing, and races between real threads beyond what the barriers order.
//
// Built and run by test/tc-emulation.test.ts: g++ -std=c++20 -I<cuda>/include native/tc_emulate.cc
#define DITFA_EMULATE 1

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>
#include <thread>
#include <vector>

namespace emu {
thread_local int tid = 0;
thread_local int bx = 0, by = 0, bz = 0;
thread_local unsigned char* smem = nullptr;
std::barrier<>* block_barrier = nullptr;

struct Warp {
  std::barrier<> bar{32};
  uint64_t slot[32][8];
};
Warp* warps = nullptr;

inline Warp& warp() { return warps[tid >> 5]; }
inline int lane() { return tid & 31; }

inline float shfl_xor(float v, int o) {
  Warp& w = warp();
  std::memcpy(&w.slot[lane()][0], &v, 4);
  w.bar.arrive_and_wait();
  float r;
  std::memcpy(&r, &w.slot[lane() ^ o][0], 4);
  w.bar.arrive_and_wait();
  return r;
}

inline float shfl(float v, int src) {
  Warp& w = warp();
  std::memcpy(&w.slot[lane()][0], &v, 4);
  w.bar.arrive_and_wait();
  float r;
  std::memcpy(&r, &w.slot[src & 31][0], 4);
  w.bar.arrive_and_wait();
  return r;
}

struct Copy {
  void* dst;
  const void* src;
  int group;
};
thread_local std::vector<Copy> pending;
thread_local int group = 0;
}  // namespace emu

#define DITFA_KERNEL(threads) void
#define DITFA_EXTERN_SMEM(type, name) type* name = reinterpret_cast<type*>(emu::smem)
#define DITFA_TID_X emu::tid
#define DITFA_BID_X emu::bx
#define DITFA_BID_Y emu::by
#define DITFA_BID_Z emu::bz
#define DITFA_SYNC() emu::block_barrier->arrive_and_wait()
#define DITFA_SHFL_XOR(v, o) emu::shfl_xor(v, o)
#define DITFA_SHFL(v, src) emu::shfl(v, src)

using std::max;
using std::min;

#include "kernel_common.cuh"

namespace ditfa {
namespace tc {

inline void cp_async16(void* smem, const void* gmem) { emu::pending.push_back({smem, gmem, emu::group}); }
inline void cp_async_commit() { ++emu::group; }
template <int N>
inline void cp_async_wait() {
  // Completes every committed group except the newest N.
  std::vector<emu::Copy> keep;
  for (const auto& c : emu::pending) {
    if (c.group < emu::group - N) std::memcpy(c.dst, c.src, 16);
    else keep.push_back(c);
  }
  emu::pending.swap(keep);
}

inline uint16_t u16(const void* p) {
  uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

// ldmatrix.m8n8.x4.b16: lanes 8i..8i+7 give the row addresses of matrix i; lane l receives, for matrix i,
// row l/4, elements 2(l%4) and 2(l%4)+1 (with .trans: column l/4 of rows 2(l%4) and 2(l%4)+1).
inline void ldmatrix_common(uint32_t (&r)[4], const void* p, bool trans) {
  emu::Warp& w = emu::warp();
  const int l = emu::lane();
  w.slot[l][0] = reinterpret_cast<uint64_t>(p);
  w.bar.arrive_and_wait();
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) {
      const uint8_t* row = reinterpret_cast<const uint8_t*>(w.slot[8 * i + l / 4][0]);
      lo = u16(row + 2 * (2 * (l % 4)));
      hi = u16(row + 2 * (2 * (l % 4) + 1));
    } else {
      const uint8_t* r0 = reinterpret_cast<const uint8_t*>(w.slot[8 * i + 2 * (l % 4)][0]);
      const uint8_t* r1 = reinterpret_cast<const uint8_t*>(w.slot[8 * i + 2 * (l % 4) + 1][0]);
      lo = u16(r0 + 2 * (l / 4));
      hi = u16(r1 + 2 * (l / 4));
    }
    r[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  w.bar.arrive_and_wait();
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) { ldmatrix_common(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) { ldmatrix_common(r, p, true); }

template <typename T>
float elem(uint16_t bits) {
  T x;
  std::memcpy(&x, &bits, 2);
  return static_cast<float>(x);
}

// mma.m16n8k16.row.col, f32 accumulators. Lane l (g = l/4, t = l%4) holds
// A: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..);
// B: b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g); C/D: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
template <typename T>
inline void mma_emulated(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emu::Warp& w = emu::warp();
  const int l = emu::lane();
  for (int i = 0; i < 4; ++i) w.slot[l][i] = a[i];
  w.slot[l][4] = b0;
  w.slot[l][5] = b1;
  w.bar.arrive_and_wait();
  float A[16][16], B[16][8];
  for (int x = 0; x < 32; ++x) {
    const int g = x / 4, t = x % 4;
    auto lo = [&](uint64_t v) { return elem<T>(static_cast<uint16_t>(v & 0xFFFF)); };
    auto hi = [&](uint64_t v) { return elem<T>(static_cast<uint16_t>((v >> 16) & 0xFFFF)); };
    A[g][2 * t] = lo(w.slot[x][0]);
    A[g][2 * t + 1] = hi(w.slot[x][0]);
    A[g + 8][2 * t] = lo(w.slot[x][1]);
    A[g + 8][2 * t + 1] = hi(w.slot[x][1]);
    A[g][2 * t + 8] = lo(w.slot[x][2]);
    A[g][2 * t + 9] = hi(w.slot[x][2]);
    A[g + 8][2 * t + 8] = lo(w.slot[x][3]);
    A[g + 8][2 * t + 9] = hi(w.slot[x][3]);
    B[2 * t][g] = lo(w.slot[x][4]);
    B[2 * t + 1][g] = hi(w.slot[x][4]);
    B[2 * t + 8][g] = lo(w.slot[x][5]);
    B[2 * t + 9][g] = hi(w.slot[x][5]);
  }
  w.bar.arrive_and_wait();
  const int g = l / 4, t = l % 4;
  const int rows[4] = {g, g, g + 8, g + 8};
  const int cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int e = 0; e < 4; ++e) {
    float s = 0.f;
    for (int k = 0; k < 16; ++k) s += A[rows[e]][k] * B[k][cols[e]];
    d[e] += s;
  }
}

template <typename T>
struct Mma;
template <>
struct Mma<__nv_bfloat16> {
  static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { mma_emulated<__nv_bfloat16>(d, a, b0, b1); }
  static uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    std::memcpy(&r, &v, 4);
    return r;
  }
};
template <>
struct Mma<__half> {
  static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { mma_emulated<__half>(d, a, b0, b1); }
  static uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    uint32_t r;
    std::memcpy(&r, &v, 4);
    return r;
  }
};

}  // namespace tc
}  // namespace ditfa

#include "flash_tc.cuh"
#include "flash_simt.cuh"

namespace {

// Runs `kernel` over a grid (gx, H, B) of blocks of `threads` threads, one block at a time. Shared
// memory starts as 0xFF bytes (NaN as fp32, bf16 and fp16).
template <typename K>
void run_grid(int gx, int H, int B, int threads, size_t smem_bytes, K kernel) {
  std::vector<float> smem_storage((smem_bytes + 16) / 4);
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_storage.data());
  for (int z = 0; z < B; ++z)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < gx; ++x) {
        std::memset(smem, 0xFF, smem_bytes);
        std::barrier<> bar(threads);
        std::vector<emu::Warp> warps(threads / 32);
        emu::block_barrier = &bar;
        emu::warps = warps.data();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            emu::tid = t;
            emu::bx = x;
            emu::by = y;
            emu::bz = z;
            emu::smem = smem;
            emu::pending.clear();
            emu::group = 0;
            kernel();
            if (!emu::pending.empty()) std::printf("FAIL: thread %d left %zu cp.async copies unwaited\n", t, emu::pending.size());
          });
        }
        for (auto& th : pool) th.join();
      }
}

bool g_simt = false; // run_case: emulate the SIMT kernel instead of the tensor-core one

int g_mt = 1; // m-tiles per warp of the tensor-core kernel

template <typename T, int DP, bool FUSED>
void launch(const ditfa::AttnParams& p, int B) {
  using namespace ditfa;
  if (g_simt) {
    run_grid((p.Lq + simt::kRows - 1) / simt::kRows, p.H, B, simt::kThreads, simt::smem_bytes(p.D),
             [&] { simt::flash_simt_kernel<T, FUSED>(p); });
  } else if constexpr (!std::is_same_v<T, float>) {
    if (g_mt == 2 && DP <= 80 && !FUSED) {
      using S = tc::Smem<DP, 2>;
      run_grid((p.Lq + S::kRows - 1) / S::kRows, p.H, B, tc::kThreads, S::kBytes, [&] { tc::flash_tc_kernel<T, DP, 2, FUSED>(p); });
    } else {
      using S = tc::Smem<DP, 1>;
      run_grid((p.Lq + S::kRows - 1) / S::kRows, p.H, B, tc::kThreads, S::kBytes, [&] { tc::flash_tc_kernel<T, DP, 1, FUSED>(p); });
    }
  }
}

template <typename T>
void dispatch(const ditfa::AttnParams& p, int B, bool fused) {
  auto go = [&](auto dp) {
    constexpr int DP = decltype(dp)::value;
    if (fused) launch<T, DP, true>(p, B);
    else launch<T, DP, false>(p, B);
  };
  if (p.D <= 64) go(std::integral_constant<int, 64>{});
  else if (p.D <= 80) go(std::integral_constant<int, 80>{});
  else go(std::integral_constant<int, 128>{});
}

bool allowed(const ditfa::Win& w, int i, int j) {
  if (w.kind == 1) return std::abs(i - j) <= w.size;
  if (w.kind == 2) {
    const int ri = i / w.cols, rj = j / w.cols, ci = i % w.cols, cj = j % w.cols;
    return std::abs(ri - rj) <= w.radius && std::abs(ci - cj) <= w.radius;
  }
  return true;
}

// float64 reference on the (already rounded) inputs: [B, L, H, D].
std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int B, int Lq, int Lkv, int H, int D,
                              double scale, const ditfa::Win* w) {
  std::vector<double> out(static_cast<size_t>(B) * Lq * H * D);
  std::vector<double> s(Lkv);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Lq; ++i) {
        double mx = -INFINITY;
        for (int j = 0; j < Lkv; ++j) {
          if (w && !allowed(*w, i, j)) {
            s[j] = -INFINITY;
            continue;
          }
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(q[((size_t(b) * Lq + i) * H + h) * D + d]) * k[((size_t(b) * Lkv + j) * H + h) * D + d];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < Lkv; ++j) sum += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
        for (int d = 0; d < D; ++d) {
          double acc = 0;
          for (int j = 0; j < Lkv; ++j)
            if (s[j] != -INFINITY) acc += std::exp(s[j] - mx) * v[((size_t(b) * Lkv + j) * H + h) * D + d];
          out[((size_t(b) * Lq + i) * H + h) * D + d] = acc / sum;
        }
      }
  return out;
}

int failures = 0;

double rel(const std::vector<float>& got, const std::vector<double>& ref, double norm_ref = -1) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (norm_ref > 0 ? norm_ref * norm_ref : den));
}

template <typename T>
void run_case(const char* tname, int B, int Lq, int Lkv, int H, int D, ditfa::Win win, unsigned seed) {
  const size_t nq = size_t(B) * Lq * H * D, nk = size_t(B) * Lkv * H * D;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> U(-2.f, 2.f);
  auto make = [&](size_t n, std::vector<float>& f, std::vector<T>& t) {
    f.resize(n);
    t.resize(n);
    for (size_t i = 0; i < n; ++i) {
      t[i] = T(U(rng));
      f[i] = static_cast<float>(t[i]);
    }
  };
  std::vector<float> qf, kf, vf, rf;
  std::vector<T> qt, kt, vt, rt;
  make(nq, qf, qt);
  make(nk, kf, kt);
  make(nk, vf, vt);
  make(nq, rf, rt);
  const double scale = 1.0 / std::sqrt(double(D));
  const ditfa::Win* wp = win.kind ? &win : nullptr;
  const auto full = reference(qf, kf, vf, B, Lq, Lkv, H, D, scale, nullptr);
  const auto wref = wp ? reference(qf, kf, vf, B, Lq, Lkv, H, D, scale, wp) : full;
  double norm_full = 0;
  for (double x : full) norm_full += x * x;
  norm_full = std::sqrt(norm_full);

  ditfa::AttnParams p{};
  p.q = qt.data();
  p.k = kt.data();
  p.v = vt.data();
  p.Lq = Lq;
  p.Lkv = Lkv;
  p.H = H;
  p.D = D;
  p.scale_log2 = float(scale * 1.4426950408889634);
  p.win = win;
  const T nan = T(NAN);
  std::vector<T> out(nq, nan), full_out(nq, nan);
  auto as_float = [](const std::vector<T>& x) {
    std::vector<float> f(x.size());
    for (size_t i = 0; i < x.size(); ++i) f[i] = static_cast<float>(x[i]);
    return f;
  };
  const double tol = 1.2e-2;
  auto report = [&](const char* what, double e) {
    const bool ok = e <= tol;
    if (!ok) ++failures;
    std::printf("%s %-4s B=%d Lq=%d Lkv=%d H=%d D=%d win=%d/%d/%d %-22s rel err %.2e\n", ok ? "ok  " : "FAIL", tname, B, Lq, Lkv, H, D, win.kind, win.size, win.radius,
                what, e);
  };
  // plain call (full or window)
  p.out = out.data();
  p.residual_in = nullptr;
  p.full_out = nullptr;
  dispatch<T>(p, B, false);
  report(wp ? "window" : "full", rel(as_float(out), wref));
  if (!wp) return;
  // window + residual in-kernel
  std::fill(out.begin(), out.end(), nan);
  p.residual_in = rt.data();
  dispatch<T>(p, B, false);
  std::vector<double> wres(wref);
  for (size_t i = 0; i < nq; ++i) wres[i] += rf[i];
  report("window+residual", rel(as_float(out), wres));
  // fused full + residual
  std::fill(out.begin(), out.end(), nan);
  p.residual_in = nullptr;
  p.full_out = full_out.data();
  dispatch<T>(p, B, true);
  report("fused: full", rel(as_float(full_out), full));
  std::vector<double> res(nq);
  for (size_t i = 0; i < nq; ++i) res[i] = full[i] - wref[i];
  report("fused: residual", rel(as_float(out), res, norm_full));
}

}  // namespace

// Default: a quick subset for the unit tests (every kernel variant, call kind, tail and tile skip);
// `--all` adds the rest.
int main(int argc, char** argv) {
  const bool all = argc > 1 && std::strcmp(argv[1], "--all") == 0;
  using ditfa::Win;
  if (all) run_case<__nv_bfloat16>("bf16", 2, 67, 67, 2, 64, Win{0, 0, 1, 0}, 1);
  run_case<__nv_bfloat16>("bf16", 1, 50, 77, 2, 72, Win{0, 0, 1, 0}, 2); // cross-attention, Lkv tail
  run_case<__nv_bfloat16>("bf16", 2, 67, 67, 2, 64, Win{1, 5, 1, 0}, 3);
  if (all) run_case<__nv_bfloat16>("bf16", 1, 200, 200, 2, 72, Win{1, 40, 1, 0}, 4); // skipped tiles on both sides
  run_case<__half>("f16", 1, 130, 130, 1, 128, Win{1, 64, 1, 0}, 5);
  run_case<__nv_bfloat16>("bf16", 1, 72, 72, 1, 72, Win{2, 0, 9, 2}, 6); // 8 × 9 grid
  if (all) run_case<__nv_bfloat16>("bf16", 1, 96, 96, 1, 40, Win{1, 0, 1, 0}, 7); // w = 0, D padded to 64
  std::printf("-- tensor-core kernel, two m-tiles per warp (fused calls stay at one)\n");
  g_mt = 2;
  if (all) run_case<__nv_bfloat16>("bf16", 2, 67, 67, 2, 64, Win{0, 0, 1, 0}, 21);
  run_case<__half>("f16", 1, 200, 200, 2, 72, Win{1, 40, 1, 0}, 22); // 128-row blocks: partial last block
  run_case<__nv_bfloat16>("bf16", 1, 130, 150, 1, 72, Win{0, 0, 1, 0}, 23); // cross-attention
  std::printf("-- SIMT kernel\n");
  g_simt = true;
  if (all) run_case<float>("f32", 2, 21, 21, 2, 72, Win{0, 0, 1, 0}, 11);
  run_case<float>("f32", 1, 13, 40, 1, 64, Win{0, 0, 1, 0}, 12); // cross-attention, two key tiles
  run_case<float>("f32", 1, 70, 70, 1, 100, Win{1, 9, 1, 0}, 13); // D % 8 != 0, window crossing key tiles
  run_case<__nv_bfloat16>("bf16", 1, 30, 30, 1, 40, Win{2, 0, 5, 1}, 14); // 6 × 5 grid
  run_case<float>("f32", 1, 9, 9, 1, 256, Win{1, 0, 1, 0}, 15); // D = 256, w = 0
  std::printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
