// The C ABI of libditfa_cuda.so, the CUDA half of @ditfa/kernels-cuda.
//
// The library is built by nvcc (scripts/build-native.mjs) and linked against the static CUDA runtime, so
// it loads on a machine with no driver; every entry point reports "no driver" / "no device" as an error
// code with a message instead of failing to load. The node addon (addon.cc) dlopens it and looks these
// symbols up; bench/torch_parity.py calls the same symbols through ctypes on PyTorch's device pointers.
//
// Only plain data crosses: device pointers as void*, sizes as int64_t, and an error buffer. Every call
// returns 0 on success or a nonzero DitfaStatus and writes a one-line message into `err`.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DITFA_CUDA_ABI_VERSION 1

#if defined(_WIN32)
#define DITFA_CUDA_API __declspec(dllexport)
#else
#define DITFA_CUDA_API __attribute__((visibility("default")))
#endif

enum DitfaStatus {
  DITFA_OK = 0,
  DITFA_ERR_INVALID = 1,     // an argument the caller should have validated
  DITFA_ERR_NO_DRIVER = 2,   // libcuda missing or too old
  DITFA_ERR_NO_DEVICE = 3,   // driver present, no usable GPU
  DITFA_ERR_CUDA = 4,        // any other CUDA runtime error (launch, out of memory, ...)
  DITFA_ERR_UNSUPPORTED = 5, // a dtype / head size combination no kernel implements
};

// Storage types of device tensors.
enum DitfaDtype { DITFA_F32 = 0, DITFA_BF16 = 1, DITFA_F16 = 2 };

// kind 0: full attention, 1: 1-D band (|i-j| <= size), 2: rows x cols grid, |dr| <= radius && |dc| <= radius.
struct DitfaWindow {
  int32_t kind;
  int64_t size;
  int64_t rows;
  int64_t cols;
  int64_t radius;
};

// One attention call over [B, L, H, D] row-major tensors, all of `dtype`. Pointers are device pointers.
// out = attention(q, k, v) under `window`;
// when residual_in != NULL: out += residual_in (window attention with the residual added in-kernel);
// when full_out != NULL (fused call; window must be kind 1 or 2): full_out = full attention and
//   out = full_out - window attention, i.e. `out` receives the residual.
struct DitfaAttnArgs {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  const void* residual_in;
  void* full_out;
  int32_t dtype;
  int64_t B;
  int64_t Lq;
  int64_t Lkv;
  int64_t H;
  int64_t D;
  float scale;
  struct DitfaWindow window;
  // 0: pick (tensor cores for bf16/f16 when D % 8 == 0 and D <= 128, else the SIMT kernel);
  // 1: force the SIMT kernel (any dtype, D <= 256); 2: force tensor cores (error when unsupported);
  // 3: tensor cores, one 16-row m-tile per warp (64-row blocks); 4: tensor cores, two m-tiles per warp
  // (128-row blocks; D <= 80, not the fused call). 2 picks between 3 and 4.
  int32_t path;
  void* stream; // cudaStream_t; NULL = the library's stream
};

struct DitfaDeviceInfo {
  char name[256];
  int32_t major;
  int32_t minor;
  int32_t multiprocessors;
  int64_t total_memory;
  int64_t shared_memory_per_block_optin;
  int32_t driver_version;
  int32_t runtime_version;
  int32_t device_count;
};

DITFA_CUDA_API int ditfa_cuda_abi_version(void);
// Architectures compiled into the library, e.g. "sm_90,compute_80".
DITFA_CUDA_API const char* ditfa_cuda_built_archs(void);
// Initialises the runtime on device 0 and fills `info`. DITFA_ERR_NO_DRIVER / NO_DEVICE when unusable.
DITFA_CUDA_API int ditfa_cuda_probe(struct DitfaDeviceInfo* info, char* err, size_t errlen);

DITFA_CUDA_API int ditfa_cuda_malloc(void** ptr, int64_t bytes, char* err, size_t errlen);
DITFA_CUDA_API int ditfa_cuda_free(void* ptr, char* err, size_t errlen);
DITFA_CUDA_API int ditfa_cuda_upload(void* dst, const void* src, int64_t bytes, char* err, size_t errlen);
DITFA_CUDA_API int ditfa_cuda_download(void* dst, const void* src, int64_t bytes, char* err, size_t errlen);
DITFA_CUDA_API int ditfa_cuda_copy(void* dst, const void* src, int64_t bytes, char* err, size_t errlen);
// Element-wise dtype conversion on the device (f32 <-> bf16 / f16, and same-type copies).
DITFA_CUDA_API int ditfa_cuda_convert(void* dst, int32_t dst_dtype, const void* src, int32_t src_dtype, int64_t n, char* err,
                                      size_t errlen);
// Fills n elements with `value` (used to poison outputs in tests).
DITFA_CUDA_API int ditfa_cuda_fill(void* dst, int32_t dtype, int64_t n, float value, char* err, size_t errlen);
// ASC: copies the conditional half of a [B, ...] batch onto the other half. cond_first: rows [0, B/2) are
// conditional. row_bytes = bytes of one batch row.
DITFA_CUDA_API int ditfa_cuda_cfg_copy(void* data, int64_t batch, int64_t row_bytes, int32_t cond_first, char* err, size_t errlen);
DITFA_CUDA_API int ditfa_cuda_attention(const struct DitfaAttnArgs* args, char* err, size_t errlen);
// Waits for the library's stream.
DITFA_CUDA_API int ditfa_cuda_synchronize(char* err, size_t errlen);

#ifdef __cplusplus
}
#endif
