// Parameters and window helpers shared by the tensor-core and SIMT attention kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// Kernel-side names of the CUDA built-ins, so that native/tc_emulate.cu can run the tensor-core kernel's
// code on the host (threads as std::threads) by defining DITFA_EMULATE and its own versions of these.
#ifndef DITFA_EMULATE
#define DITFA_KERNEL(threads) __global__ void __launch_bounds__(threads)
#define DITFA_EXTERN_SMEM(type, name) extern __shared__ __align__(16) type name[]
#define DITFA_TID_X threadIdx.x
#define DITFA_BID_X blockIdx.x
#define DITFA_BID_Y blockIdx.y
#define DITFA_BID_Z blockIdx.z
#define DITFA_SYNC() __syncthreads()
#define DITFA_SHFL_XOR(v, o) __shfl_xor_sync(0xffffffffu, v, o)
#define DITFA_SHFL(v, src) __shfl_sync(0xffffffffu, v, src)
#endif

namespace ditfa {

// kind 0: none; 1: |i - j| <= size; 2: rows×cols grid (cols used), |dr| <= radius && |dc| <= radius.
// The host clamps size and radius to the sequence, so every product below fits in an int.
struct Win {
  int kind;
  int size;
  int cols;
  int radius;
};

// One kernel call over [B, L, H, D] tensors (token stride H·D). Sizes were validated on the host.
struct AttnParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  const void* residual_in;
  void* full_out;
  int Lq;
  int Lkv;
  int H;
  int D;
  float scale_log2; // softmax scale · log2(e): the kernels use exp2
  Win win;
};

__host__ __device__ __forceinline__ bool window_allows(const Win& w, int i, int j) {
  if (w.kind == 1) return abs(i - j) <= w.size;
  if (w.kind == 2) {
    const int ri = i / w.cols, rj = j / w.cols;
    const int ci = i - ri * w.cols, cj = j - rj * w.cols;
    return abs(ri - rj) <= w.radius && abs(ci - cj) <= w.radius;
  }
  return true;
}

// Keys [lo, hi) that the window may allow for any query row in [m0, mlast].
__host__ __device__ __forceinline__ void window_key_range(const Win& w, int m0, int mlast, int Lkv, int& lo, int& hi) {
  lo = 0;
  hi = Lkv;
  if (w.kind == 1) {
    lo = max(0, m0 - w.size);
    hi = min(Lkv, mlast + w.size + 1);
  } else if (w.kind == 2) {
    const int rmin = m0 / w.cols, rmax = mlast / w.cols;
    lo = max(0, (rmin - w.radius) * w.cols);
    hi = min(Lkv, (rmax + w.radius + 1) * w.cols);
  }
}

// True when every (query in [m0, mlast], key in [n0, n1]) pair is allowed (no per-element mask needed).
// Conservative (false) for 2-D windows.
__host__ __device__ __forceinline__ bool tile_inside_window(const Win& w, int m0, int mlast, int n0, int n1) {
  if (w.kind == 0) return true;
  if (w.kind == 1) return n1 - m0 <= w.size && mlast - n0 <= w.size;
  return false;
}

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// Two adjacent elements (p is 2-element aligned).
template <typename T>
__device__ __forceinline__ void store2(T* p, float a, float b) {
  p[0] = from_float<T>(a);
  p[1] = from_float<T>(b);
}
template <>
__device__ __forceinline__ void store2<__nv_bfloat16>(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}
template <>
__device__ __forceinline__ void store2<__half>(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}

template <typename T>
__device__ __forceinline__ void load2(const T* p, float& a, float& b) {
  a = to_float<T>(p[0]);
  b = to_float<T>(p[1]);
}

}  // namespace ditfa
