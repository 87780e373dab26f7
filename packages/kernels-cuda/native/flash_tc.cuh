// Tensor-core flash attention (FlashAttention-2 style) for bf16 / fp16 storage with fp32 accumulation.
//
// One block of 4 warps computes 64·MT query rows of one (batch, head); each warp owns 16·MT rows. Key/value
// tiles of 64 tokens stream through shared memory with cp.async (double buffered). S = Q·Kᵀ and O += P·V
// use mma.sync.m16n8k16 (fp32 accumulators); P goes from the S accumulators straight into A fragments.
// The head size D is padded to DP (a multiple of 16) with zeros in shared memory, so D = 72 runs as 80.
//
// Windowed calls visit only the key tiles that intersect the band of the block's rows; a per-element mask
// is applied only on tiles that are not fully inside the band (and on the last, partial tile).
// FUSED computes full attention and window attention in the same pass over the keys, with separate
// running maxima, and writes full_out = full and out = full − window (the WA-RS residual).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernel_common.cuh"

namespace ditfa {
namespace tc {

constexpr int kBN = 64;       // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

// MT: 16-row m-tiles per warp, so a block holds 64·MT query rows. With MT = 2 each K and V fragment read
// from shared memory feeds two mma's, halving shared-memory traffic per FLOP at the cost of registers.
template <int DP, int MT>
struct Smem {
  static constexpr int kRows = kWarps * 16 * MT;
  static constexpr int kStride = DP + 8; // elements per shared row: +16 bytes makes ldmatrix conflict-free
  static constexpr int kTile = kBN * kStride;
  static constexpr int kBytes = (kRows * kStride + 4 * kTile) * 2; // Q, K[2], V[2]
};

#ifndef DITFA_EMULATE
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};
#endif  // DITFA_EMULATE (native/tc_emulate.cu supplies host versions of the primitives above)

// Loads `rows` tokens starting at `row0` of one (b, h) slice into a [rows][stride] shared tile.
// Columns D..DP-1 and rows past `limit` are zero-filled with plain stores.
template <typename T, int DP>
__device__ __forceinline__ void load_tile(T* smem, const T* base, int64_t token_stride, int row0, int limit, int D, int rows, int stride) {
  constexpr int kChunks = DP / 8; // 16-byte chunks per row
  const int dchunks = D / 8;
  for (int idx = DITFA_TID_X; idx < rows * kChunks; idx += kThreads) {
    const int r = idx / kChunks;
    const int c = idx - r * kChunks;
    T* dst = smem + r * stride + c * 8;
    const int token = row0 + r;
    if (token < limit && c < dchunks) {
      cp_async16(dst, base + static_cast<int64_t>(token) * token_stride + c * 8);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
}

// Online softmax over one tile for the thread's two rows (scores already in the log2 domain). Rescales
// the running output, turns the scores into probabilities in place and packs them as A fragments of P·V.
// A row whose keys are all masked so far keeps m = -inf and contributes nothing (no NaN).
template <typename T, int NO>
__device__ __forceinline__ void softmax_update(float (&s)[8][4], float (&m)[2], float (&l)[2], float (&o)[NO][4],
                                               uint32_t (&pa)[4][4]) {
  float alpha[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
    mx = fmaxf(mx, DITFA_SHFL_XOR(mx, 1));
    mx = fmaxf(mx, DITFA_SHFL_XOR(mx, 2));
    const float mnew = fmaxf(m[r], mx);
    const float muse = mnew == -INFINITY ? 0.f : mnew;
    alpha[r] = exp2f(m[r] - muse);
    m[r] = mnew;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      s[j][2 * r] = exp2f(s[j][2 * r] - muse);
      s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - muse);
      sum += s[j][2 * r] + s[j][2 * r + 1];
    }
    l[r] = l[r] * alpha[r] + sum; // per-thread partial; the quad's partials are added in the epilogue
  }
#pragma unroll
  for (int j = 0; j < NO; ++j) {
    o[j][0] *= alpha[0];
    o[j][1] *= alpha[0];
    o[j][2] *= alpha[1];
    o[j][3] *= alpha[1];
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    pa[kk][0] = Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]);
    pa[kk][1] = Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]);
    pa[kk][2] = Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    pa[kk][3] = Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

template <typename T, int DP, int MT, bool FUSED>
DITFA_KERNEL(kThreads) flash_tc_kernel(const AttnParams p) {
  constexpr int BM = Smem<DP, MT>::kRows;
  constexpr int kStride = Smem<DP, MT>::kStride;
  constexpr int kTile = Smem<DP, MT>::kTile;
  constexpr int kKSteps = DP / 16; // k-steps of Q·Kᵀ, and pairs of 8-wide d tiles of P·V
  constexpr int kDTiles = DP / 8;
  constexpr int FM = FUSED ? MT : 1; // sizes of the window-side arrays (unused unless FUSED)
  constexpr int FD = FUSED ? kDTiles : 1;
  DITFA_EXTERN_SMEM(unsigned char, smem_raw);
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + BM * kStride;
  T* Vs = Ks + 2 * kTile;

  const int m0 = DITFA_BID_X * BM;
  const int h = DITFA_BID_Y;
  const int b = DITFA_BID_Z;
  const int warp = DITFA_TID_X >> 5;
  const int lane = DITFA_TID_X & 31;
  const int g = lane >> 2;
  const int t = lane & 3;

  const int64_t tstride = p.H * p.D; // elements between consecutive tokens
  const T* qbase = static_cast<const T*>(p.q) + (static_cast<int64_t>(b) * p.Lq * p.H + h) * p.D;
  const T* kbase = static_cast<const T*>(p.k) + (static_cast<int64_t>(b) * p.Lkv * p.H + h) * p.D;
  const T* vbase = static_cast<const T*>(p.v) + (static_cast<int64_t>(b) * p.Lkv * p.H + h) * p.D;

  const int mlast = min(m0 + BM, p.Lq) - 1;
  int wlo = 0, whi = p.Lkv; // keys that the window may allow for this block's rows
  window_key_range(p.win, m0, mlast, p.Lkv, wlo, whi);
  // Keys visited: all of them for full and fused calls, only the band for window calls.
  const bool windowed = p.win.kind != 0;
  const int klo = (windowed && !FUSED) ? wlo : 0;
  const int khi = (windowed && !FUSED) ? whi : p.Lkv;
  const int tile0 = klo / kBN;
  const int ntiles = (khi + kBN - 1) / kBN - tile0;

  load_tile<T, DP>(Qs, qbase, tstride, m0, p.Lq, p.D, BM, kStride);
  load_tile<T, DP>(Ks, kbase, tstride, tile0 * kBN, p.Lkv, p.D, kBN, kStride);
  load_tile<T, DP>(Vs, vbase, tstride, tile0 * kBN, p.Lkv, p.D, kBN, kStride);
  cp_async_commit();

  // Warp `warp` owns rows [m0 + warp·16·MT, +16·MT): m-tile mt covers 16 of them; the thread holds rows
  // g and g + 8 of each m-tile.
  int row0[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) row0[mt] = m0 + (warp * MT + mt) * 16 + g;

  float o[MT][kDTiles][4];
  float ow[FM][FD][4];
  float mrow[MT][2], lrow[MT][2], mwin[FM][2], lwin[FM][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int j = 0; j < kDTiles; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
    mrow[mt][0] = mrow[mt][1] = -INFINITY;
    lrow[mt][0] = lrow[mt][1] = 0.f;
  }
#pragma unroll
  for (int mt = 0; mt < FM; ++mt) {
#pragma unroll
    for (int j = 0; j < FD; ++j) ow[mt][j][0] = ow[mt][j][1] = ow[mt][j][2] = ow[mt][j][3] = 0.f;
    mwin[mt][0] = mwin[mt][1] = -INFINITY;
    lwin[mt][0] = lwin[mt][1] = 0.f;
  }

  for (int it = 0; it < ntiles; ++it) {
    const int buf = it & 1;
    if (it + 1 < ntiles) {
      const int next = (tile0 + it + 1) * kBN;
      load_tile<T, DP>(Ks + (buf ^ 1) * kTile, kbase, tstride, next, p.Lkv, p.D, kBN, kStride);
      load_tile<T, DP>(Vs + (buf ^ 1) * kTile, vbase, tstride, next, p.Lkv, p.D, kBN, kStride);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    DITFA_SYNC();

    const T* Kt = Ks + buf * kTile;
    const T* Vt = Vs + buf * kTile;
    const int n0 = (tile0 + it) * kBN;

    // S = Q·Kᵀ for this warp's 16·MT rows × 64 keys; each K fragment serves every m-tile.
    float s[MT][8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < 8; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(a[mt], Qs + ((warp * MT + mt) * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + kk * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, Kt + (np * 16 + (lane & 7) + (lane >> 4) * 8) * kStride + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma<T>::run(s[mt][2 * np], a[mt], bf[0], bf[1]);
          Mma<T>::run(s[mt][2 * np + 1], a[mt], bf[2], bf[3]);
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][j][e] *= p.scale_log2;

    // Which parts of the tile need a per-element mask.
    const bool tail = n0 + kBN > p.Lkv;
    const bool in_band = windowed && (n0 < whi && n0 + kBN > wlo);
    const bool band_full = windowed && tile_inside_window(p.win, m0, mlast, n0, n0 + kBN - 1);

    float sw[FM][FUSED ? 8 : 1][4];
    if constexpr (FUSED) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) sw[mt][j][e] = s[mt][j][e];
    }
    if (tail || (windowed && !band_full)) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int row = row0[mt] + ((e < 2) ? 0 : 8);
            const int col = n0 + j * 8 + 2 * t + (e & 1);
            const bool valid = col < p.Lkv;
            const bool allow = valid && (!windowed || window_allows(p.win, row, col));
            if constexpr (FUSED) {
              if (!valid) s[mt][j][e] = -INFINITY;
              if (!allow) sw[mt][j][e] = -INFINITY;
            } else if (!allow) {
              s[mt][j][e] = -INFINITY;
            }
          }
        }
      }
    }

    // Online softmax on s (full for FUSED, window or full otherwise), then O += P·V.
    uint32_t pa[MT][4][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) softmax_update<T>(s[mt], mrow[mt], lrow[mt], o[mt], pa[mt]);
    uint32_t pw[FM][FUSED ? 4 : 1][4];
    const bool do_win = FUSED && in_band;
    if constexpr (FUSED) {
      if (do_win) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) softmax_update<T>(sw[mt], mwin[mt], lwin[mt], ow[mt], pw[mt]);
      }
    }

#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int dp = 0; dp < kKSteps; ++dp) {
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, Vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kStride + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma<T>::run(o[mt][2 * dp], pa[mt][kk], bf[0], bf[1]);
          Mma<T>::run(o[mt][2 * dp + 1], pa[mt][kk], bf[2], bf[3]);
        }
        if constexpr (FUSED) {
          if (do_win) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              Mma<T>::run(ow[mt][2 * dp], pw[mt][kk], bf[0], bf[1]);
              Mma<T>::run(ow[mt][2 * dp + 1], pw[mt][kk], bf[2], bf[3]);
            }
          }
        }
      }
    }
    DITFA_SYNC(); // the next iteration's loads overwrite this buffer
  }

  // Epilogue: normalise and store (pairs of elements, 4 bytes per store).
  T* obase = static_cast<T*>(p.out) + (static_cast<int64_t>(b) * p.Lq * p.H + h) * p.D;
  T* fbase = FUSED ? static_cast<T*>(p.full_out) + (static_cast<int64_t>(b) * p.Lq * p.H + h) * p.D : nullptr;
  const T* rbase = p.residual_in ? static_cast<const T*>(p.residual_in) + (static_cast<int64_t>(b) * p.Lq * p.H + h) * p.D : nullptr;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    float inv[2], invw[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = lrow[mt][r];
      l += DITFA_SHFL_XOR(l, 1);
      l += DITFA_SHFL_XOR(l, 2);
      inv[r] = l > 0.f ? 1.f / l : 0.f;
      if constexpr (FUSED) {
        float lw = lwin[mt][r];
        lw += DITFA_SHFL_XOR(lw, 1);
        lw += DITFA_SHFL_XOR(lw, 2);
        invw[r] = lw > 0.f ? 1.f / lw : 0.f;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0[mt] + 8 * r;
      if (row >= p.Lq) continue;
      const int64_t off = static_cast<int64_t>(row) * tstride;
#pragma unroll
      for (int j = 0; j < kDTiles; ++j) {
        const int col = j * 8 + 2 * t;
        if (col >= p.D) continue;
        float x0 = o[mt][j][2 * r] * inv[r];
        float x1 = o[mt][j][2 * r + 1] * inv[r];
        if constexpr (FUSED) {
          store2<T>(fbase + off + col, x0, x1);
          x0 -= ow[mt][j][2 * r] * invw[r];
          x1 -= ow[mt][j][2 * r + 1] * invw[r];
        } else if (rbase) {
          float r0v, r1v;
          load2<T>(rbase + off + col, r0v, r1v);
          x0 += r0v;
          x1 += r1v;
        }
        store2<T>(obase + off + col, x0, x1);
      }
    }
  }
}

}  // namespace tc
}  // namespace ditfa
