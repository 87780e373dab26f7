// Host side of libditfa_cuda.so: the C ABI declared in ditfa_cuda.h. Every entry point checks its
// arguments, every CUDA call's return code and the launch error, and reports failures as a status code and
// a one-line message; nothing here prints or aborts.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "ditfa_cuda.h"
#include "flash_simt.cuh"
#include "flash_tc.cuh"

#ifndef DITFA_CUDA_ARCHS
#define DITFA_CUDA_ARCHS "unknown"
#endif

namespace {

int fail(char* err, size_t errlen, int code, const char* fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

int cuda_fail(char* err, size_t errlen, cudaError_t e, const char* what) {
  int code = DITFA_ERR_CUDA;
  if (e == cudaErrorInsufficientDriver || e == cudaErrorStubLibrary || e == cudaErrorCallRequiresNewerDriver) {
    code = DITFA_ERR_NO_DRIVER;
  } else if (e == cudaErrorNoDevice || e == cudaErrorInvalidDevice || e == cudaErrorDevicesUnavailable) {
    code = DITFA_ERR_NO_DEVICE;
  }
  return fail(err, errlen, code, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define DITFA_CHECK(call)                                        \
  do {                                                           \
    cudaError_t e_ = (call);                                     \
    if (e_ != cudaSuccess) return cuda_fail(err, errlen, e_, #call); \
  } while (0)

// After a launch: configuration errors show up at once; execution errors at the next synchronising call.
#define DITFA_CHECK_LAUNCH(what)                                  \
  do {                                                            \
    cudaError_t e_ = cudaGetLastError();                          \
    if (e_ != cudaSuccess) return cuda_fail(err, errlen, e_, what); \
  } while (0)

bool valid_dtype(int dtype) { return dtype == DITFA_F32 || dtype == DITFA_BF16 || dtype == DITFA_F16; }

template <typename D, typename S>
__global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = ditfa::from_float<D>(ditfa::to_float<S>(src[i]));
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, int64_t n, float value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = ditfa::from_float<T>(value);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 4096 ? (blocks < 1 ? 1 : blocks) : 4096);
}

template <typename D, typename S>
int launch_convert(void* dst, const void* src, int64_t n, char* err, size_t errlen) {
  convert_kernel<D, S><<<grid_for(n), 256>>>(static_cast<D*>(dst), static_cast<const S*>(src), n);
  DITFA_CHECK_LAUNCH("convert kernel launch");
  return DITFA_OK;
}

template <typename D>
int convert_from(void* dst, const void* src, int src_dtype, int64_t n, char* err, size_t errlen) {
  switch (src_dtype) {
    case DITFA_F32: return launch_convert<D, float>(dst, src, n, err, errlen);
    case DITFA_BF16: return launch_convert<D, __nv_bfloat16>(dst, src, n, err, errlen);
    default: return launch_convert<D, __half>(dst, src, n, err, errlen);
  }
}

template <typename T, bool FUSED>
int launch_simt(const ditfa::AttnParams& p, int B, cudaStream_t stream, char* err, size_t errlen) {
  const size_t smem = ditfa::simt::smem_bytes(p.D);
  auto kernel = ditfa::simt::flash_simt_kernel<T, FUSED>;
  if (smem > 48 * 1024) DITFA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid((p.Lq + ditfa::simt::kRows - 1) / ditfa::simt::kRows, p.H, B);
  kernel<<<grid, ditfa::simt::kThreads, smem, stream>>>(p);
  DITFA_CHECK_LAUNCH("SIMT attention kernel launch");
  return DITFA_OK;
}

template <typename T, int DP, int MT, bool FUSED>
int launch_tc(const ditfa::AttnParams& p, int B, cudaStream_t stream, char* err, size_t errlen) {
  using S = ditfa::tc::Smem<DP, MT>;
  constexpr int smem = S::kBytes;
  auto kernel = ditfa::tc::flash_tc_kernel<T, DP, MT, FUSED>;
  if (smem > 48 * 1024) DITFA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid((p.Lq + S::kRows - 1) / S::kRows, p.H, B);
  kernel<<<grid, ditfa::tc::kThreads, smem, stream>>>(p);
  DITFA_CHECK_LAUNCH("tensor-core attention kernel launch");
  return DITFA_OK;
}

// Two m-tiles per warp (128-row blocks) for D <= 80 without the fused call's second accumulator, unless a
// narrow band would make the taller block visit many keys outside it; one m-tile otherwise (registers).
template <typename T, bool FUSED>
int launch_tc_d(const ditfa::AttnParams& p, int B, int mt, cudaStream_t stream, char* err, size_t errlen) {
  if (p.D > 80) return launch_tc<T, 128, 1, FUSED>(p, B, stream, err, errlen);
  if constexpr (!FUSED) {
    if (mt == 0) mt = (p.win.kind == 0 || (p.win.kind == 1 && p.win.size >= 512)) ? 2 : 1;
    if (mt == 2) {
      if (p.D <= 64) return launch_tc<T, 64, 2, false>(p, B, stream, err, errlen);
      return launch_tc<T, 80, 2, false>(p, B, stream, err, errlen);
    }
  }
  if (p.D <= 64) return launch_tc<T, 64, 1, FUSED>(p, B, stream, err, errlen);
  return launch_tc<T, 80, 1, FUSED>(p, B, stream, err, errlen);
}

template <bool FUSED>
int dispatch(const ditfa::AttnParams& p, int B, int dtype, bool tc, int mt, cudaStream_t stream, char* err, size_t errlen) {
  if (tc) {
    if (dtype == DITFA_BF16) return launch_tc_d<__nv_bfloat16, FUSED>(p, B, mt, stream, err, errlen);
    return launch_tc_d<__half, FUSED>(p, B, mt, stream, err, errlen);
  }
  if (dtype == DITFA_F32) return launch_simt<float, FUSED>(p, B, stream, err, errlen);
  if (dtype == DITFA_BF16) return launch_simt<__nv_bfloat16, FUSED>(p, B, stream, err, errlen);
  return launch_simt<__half, FUSED>(p, B, stream, err, errlen);
}

bool aligned16(const void* ptr) { return ptr == nullptr || (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

extern "C" {

int ditfa_cuda_abi_version(void) { return DITFA_CUDA_ABI_VERSION; }

const char* ditfa_cuda_built_archs(void) { return DITFA_CUDA_ARCHS; }

int ditfa_cuda_probe(DitfaDeviceInfo* info, char* err, size_t errlen) {
  if (!info) return fail(err, errlen, DITFA_ERR_INVALID, "probe: info is NULL");
  std::memset(info, 0, sizeof(*info));
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  info->runtime_version = runtime;
  int driver = 0;
  cudaDriverGetVersion(&driver); // 0 when no driver is installed
  info->driver_version = driver;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return cuda_fail(err, errlen, e, "cudaGetDeviceCount");
  info->device_count = count;
  if (count == 0) return fail(err, errlen, DITFA_ERR_NO_DEVICE, "cudaGetDeviceCount: no CUDA device");
  DITFA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  DITFA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::snprintf(info->name, sizeof(info->name), "%s", prop.name);
  info->major = prop.major;
  info->minor = prop.minor;
  info->multiprocessors = prop.multiProcessorCount;
  info->total_memory = static_cast<int64_t>(prop.totalGlobalMem);
  info->shared_memory_per_block_optin = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
  if (prop.major < 8) {
    return fail(err, errlen, DITFA_ERR_NO_DEVICE, "%s has compute capability %d.%d; the kernels need 8.0 or newer (cp.async, bf16 mma)",
                prop.name, prop.major, prop.minor);
  }
  return DITFA_OK;
}

int ditfa_cuda_malloc(void** ptr, int64_t bytes, char* err, size_t errlen) {
  if (!ptr || bytes < 0) return fail(err, errlen, DITFA_ERR_INVALID, "malloc: invalid arguments (bytes %lld)", static_cast<long long>(bytes));
  *ptr = nullptr;
  DITFA_CHECK(cudaMalloc(ptr, bytes > 0 ? static_cast<size_t>(bytes) : 1));
  return DITFA_OK;
}

int ditfa_cuda_free(void* ptr, char* err, size_t errlen) {
  if (ptr) DITFA_CHECK(cudaFree(ptr));
  return DITFA_OK;
}

int ditfa_cuda_upload(void* dst, const void* src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0 || (bytes > 0 && (!dst || !src))) return fail(err, errlen, DITFA_ERR_INVALID, "upload: invalid arguments");
  if (bytes > 0) DITFA_CHECK(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
  return DITFA_OK;
}

int ditfa_cuda_download(void* dst, const void* src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0 || (bytes > 0 && (!dst || !src))) return fail(err, errlen, DITFA_ERR_INVALID, "download: invalid arguments");
  if (bytes > 0) DITFA_CHECK(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
  return DITFA_OK;
}

int ditfa_cuda_copy(void* dst, const void* src, int64_t bytes, char* err, size_t errlen) {
  if (bytes < 0 || (bytes > 0 && (!dst || !src))) return fail(err, errlen, DITFA_ERR_INVALID, "copy: invalid arguments");
  if (bytes > 0) DITFA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, 0));
  return DITFA_OK;
}

int ditfa_cuda_convert(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n, char* err, size_t errlen) {
  if (!valid_dtype(dst_dtype) || !valid_dtype(src_dtype) || n < 0 || (n > 0 && (!dst || !src))) {
    return fail(err, errlen, DITFA_ERR_INVALID, "convert: invalid arguments (dtypes %d <- %d, n %lld)", dst_dtype, src_dtype, static_cast<long long>(n));
  }
  if (n == 0) return DITFA_OK;
  switch (dst_dtype) {
    case DITFA_F32: return convert_from<float>(dst, src, src_dtype, n, err, errlen);
    case DITFA_BF16: return convert_from<__nv_bfloat16>(dst, src, src_dtype, n, err, errlen);
    default: return convert_from<__half>(dst, src, src_dtype, n, err, errlen);
  }
}

int ditfa_cuda_fill(void* dst, int32_t dtype, int64_t n, float value, char* err, size_t errlen) {
  if (!valid_dtype(dtype) || n < 0 || (n > 0 && !dst)) return fail(err, errlen, DITFA_ERR_INVALID, "fill: invalid arguments");
  if (n == 0) return DITFA_OK;
  if (dtype == DITFA_F32) fill_kernel<float><<<grid_for(n), 256>>>(static_cast<float*>(dst), n, value);
  else if (dtype == DITFA_BF16) fill_kernel<__nv_bfloat16><<<grid_for(n), 256>>>(static_cast<__nv_bfloat16*>(dst), n, value);
  else fill_kernel<__half><<<grid_for(n), 256>>>(static_cast<__half*>(dst), n, value);
  DITFA_CHECK_LAUNCH("fill kernel launch");
  return DITFA_OK;
}

int ditfa_cuda_cfg_copy(void* data, int64_t batch, int64_t row_bytes, int32_t cond_first, char* err, size_t errlen) {
  if (!data || batch <= 0 || batch % 2 != 0 || row_bytes < 0) {
    return fail(err, errlen, DITFA_ERR_INVALID, "cfg_copy: expected an even, non-zero batch (got %lld)", static_cast<long long>(batch));
  }
  const int64_t half = batch / 2;
  char* base = static_cast<char*>(data);
  char* cond = base + (cond_first ? 0 : half * row_bytes);
  char* uncond = base + (cond_first ? half * row_bytes : 0);
  DITFA_CHECK(cudaMemcpyAsync(uncond, cond, static_cast<size_t>(half * row_bytes), cudaMemcpyDeviceToDevice, 0));
  return DITFA_OK;
}

int ditfa_cuda_attention(const DitfaAttnArgs* a, char* err, size_t errlen) {
  if (!a) return fail(err, errlen, DITFA_ERR_INVALID, "attention: args is NULL");
  if (!valid_dtype(a->dtype)) return fail(err, errlen, DITFA_ERR_INVALID, "attention: unknown dtype %d", a->dtype);
  if (a->B < 0 || a->Lq < 0 || a->Lkv < 0 || a->H < 0 || a->D < 1 || a->D > ditfa::simt::kMaxD) {
    return fail(err, errlen, DITFA_ERR_INVALID, "attention: invalid sizes B %lld Lq %lld Lkv %lld H %lld D %lld (D must be in [1, %d])",
                static_cast<long long>(a->B), static_cast<long long>(a->Lq), static_cast<long long>(a->Lkv), static_cast<long long>(a->H),
                static_cast<long long>(a->D), ditfa::simt::kMaxD);
  }
  if (a->B == 0 || a->Lq == 0 || a->H == 0) return DITFA_OK;
  if (a->Lkv == 0) return fail(err, errlen, DITFA_ERR_INVALID, "attention: Lkv = 0 for a non-empty query");
  if (a->B > 65535 || a->H > 65535 || a->Lq > (1LL << 30) || a->Lkv > (1LL << 30) || a->H * a->D > (1LL << 30)) {
    return fail(err, errlen, DITFA_ERR_INVALID, "attention: sizes beyond the kernels' limits (B, H <= 65535; L <= 2^30)");
  }
  if (!a->q || !a->k || !a->v || !a->out) return fail(err, errlen, DITFA_ERR_INVALID, "attention: NULL tensor pointer");
  if (!std::isfinite(a->scale)) return fail(err, errlen, DITFA_ERR_INVALID, "attention: scale is not finite");
  const bool fused = a->full_out != nullptr;
  if (fused && a->residual_in) return fail(err, errlen, DITFA_ERR_INVALID, "attention: full_out and residual_in are exclusive");
  const DitfaWindow& w = a->window;
  if (w.kind < 0 || w.kind > 2) return fail(err, errlen, DITFA_ERR_INVALID, "attention: unknown window kind %d", w.kind);
  if (fused && w.kind == 0) return fail(err, errlen, DITFA_ERR_INVALID, "attention: the fused full+residual call needs a window");
  if (w.kind != 0 && a->Lq != a->Lkv) return fail(err, errlen, DITFA_ERR_INVALID, "attention: window attention needs Lq == Lkv");
  if (w.kind == 1 && w.size < 0) return fail(err, errlen, DITFA_ERR_INVALID, "attention: negative window size");
  if (w.kind == 2 && (w.rows < 1 || w.cols < 1 || w.radius < 0 || w.rows * w.cols != a->Lq)) {
    return fail(err, errlen, DITFA_ERR_INVALID, "attention: 2-D window grid does not match L");
  }

  ditfa::AttnParams p;
  p.q = a->q;
  p.k = a->k;
  p.v = a->v;
  p.out = a->out;
  p.residual_in = a->residual_in;
  p.full_out = a->full_out;
  p.Lq = static_cast<int>(a->Lq);
  p.Lkv = static_cast<int>(a->Lkv);
  p.H = static_cast<int>(a->H);
  p.D = static_cast<int>(a->D);
  p.scale_log2 = a->scale * 1.4426950408889634f;
  p.win.kind = w.kind;
  p.win.size = static_cast<int>(w.kind == 1 ? (w.size < a->Lkv ? w.size : a->Lkv) : 0);
  p.win.cols = static_cast<int>(w.kind == 2 ? w.cols : 1);
  p.win.radius = static_cast<int>(w.kind == 2 ? (w.radius < w.rows + w.cols ? w.radius : w.rows + w.cols) : 0);

  const bool tc_ok = a->dtype != DITFA_F32 && a->D % 8 == 0 && a->D <= 128 && aligned16(a->q) && aligned16(a->k) && aligned16(a->v);
  if (a->path < 0 || a->path > 4) return fail(err, errlen, DITFA_ERR_INVALID, "attention: unknown path %d", a->path);
  if (a->path >= 2 && !tc_ok) {
    return fail(err, errlen, DITFA_ERR_UNSUPPORTED,
                "attention: the tensor-core kernel needs bf16/f16 storage, D %% 8 == 0, D <= 128 and 16-byte aligned q/k/v (dtype %d, D %lld)",
                a->dtype, static_cast<long long>(a->D));
  }
  if (a->path == 4 && (fused || a->D > 80)) {
    return fail(err, errlen, DITFA_ERR_UNSUPPORTED, "attention: two m-tiles per warp (path 4) need D <= 80 and no fused call");
  }
  const bool tc = tc_ok && a->path != 1;
  const int mt = a->path == 3 ? 1 : a->path == 4 ? 2 : 0;
  cudaStream_t stream = static_cast<cudaStream_t>(a->stream);
  const int B = static_cast<int>(a->B);
  return fused ? dispatch<true>(p, B, a->dtype, tc, mt, stream, err, errlen) : dispatch<false>(p, B, a->dtype, tc, mt, stream, err, errlen);
}

int ditfa_cuda_synchronize(char* err, size_t errlen) {
  DITFA_CHECK(cudaDeviceSynchronize());
  return DITFA_OK;
}

}  // extern "C"
