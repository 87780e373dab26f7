// The addon's whole native surface. Init below lists every export; src/binding.ts types them. Only
// typed arrays and numbers cross the boundary. Every argument is checked here again (the TypeScript
// layer checks first, with core's error classes) before any native memory is read or written.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "buffer_pool.h"
#include "dense.h"
#include "kernels.h"
#include "thread_pool.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ditfa {
namespace {

// Bumped whenever an export's signature or meaning changes; src/binding.ts checks it on load.
constexpr int kAbiVersion = 2;

enum Feature : uint32_t {
  kAvx2 = 1u << 0,
  kFma = 1u << 1,
  kAvx512f = 1u << 2,
  kAvx512bw = 1u << 3,
  kAvx512vl = 1u << 4,
  kAvx512dq = 1u << 5,
  kAvx512bf16 = 1u << 6,
  kAmxTile = 1u << 7,
  kAmxBf16 = 1u << 8,
  kAmxOs = 1u << 9,  // the OS granted the AMX tile data state to this process
};

}  // namespace

// Linux: ask for the AMX tile data state (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); process-wide.
bool amx_os_enable() {
#if defined(__x86_64__) && defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

namespace {

enum Isa : int { kScalar = 0, kIsaAvx2 = 1, kIsaAvx512 = 2, kIsaAvx512Bf16 = 3, kIsaAmxBf16 = 4 };

uint32_t detect_features() {
  uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) f |= kAvx2;
  if (__builtin_cpu_supports("fma")) f |= kFma;
  if (__builtin_cpu_supports("avx512f")) f |= kAvx512f;
  if (__builtin_cpu_supports("avx512bw")) f |= kAvx512bw;
  if (__builtin_cpu_supports("avx512vl")) f |= kAvx512vl;
  if (__builtin_cpu_supports("avx512dq")) f |= kAvx512dq;
  if (__builtin_cpu_supports("avx512bf16")) f |= kAvx512bf16;
#endif
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    if (d & (1u << 24)) f |= kAmxTile;
    if (d & (1u << 22)) f |= kAmxBf16;
  }
  if ((f & (kAmxTile | kAmxBf16)) == (kAmxTile | kAmxBf16) && amx_os_enable()) f |= kAmxOs;
#endif
  return f;
}

const uint32_t g_features = detect_features();

bool isa_supported(int isa) {
  switch (isa) {
    case kScalar:
      return true;
    case kIsaAvx2:
      return kernels_avx2() != nullptr && (g_features & (kAvx2 | kFma)) == (kAvx2 | kFma);
    case kIsaAvx512:
      return kernels_avx512() != nullptr && (g_features & (kAvx512f | kAvx512bw | kAvx512vl | kAvx512dq)) == (kAvx512f | kAvx512bw | kAvx512vl | kAvx512dq);
    case kIsaAvx512Bf16:
      return kernels_avx512bf16() != nullptr && isa_supported(kIsaAvx512) && (g_features & kAvx512bf16) != 0;
    case kIsaAmxBf16:
      return kernels_amx() != nullptr && isa_supported(kIsaAvx512Bf16) && (g_features & kAmxOs) != 0;
    default:
      return false;
  }
}

const KernelSet* kernel_set(int isa) {
  switch (isa) {
    case kIsaAvx2:
      return kernels_avx2();
    case kIsaAvx512:
      return kernels_avx512();
    case kIsaAvx512Bf16:
      return kernels_avx512bf16();
    case kIsaAmxBf16:
      return kernels_amx();
    default:
      return kernels_scalar();
  }
}

int best_fp32_isa() {
  if (isa_supported(kIsaAvx512)) return kIsaAvx512;
  if (isa_supported(kIsaAvx2)) return kIsaAvx2;
  return kScalar;
}

// -1: automatic. Tests force each supported path in turn.
int g_forced_isa = -1;
// The bf16 path: -1 automatic (AMX where it runs, else AVX512-BF16), or one of them forced (tests, benches).
int g_forced_bf16_isa = -1;

int best_bf16_isa() {
  if (g_forced_bf16_isa >= 0) return g_forced_bf16_isa;
  return isa_supported(kIsaAmxBf16) ? kIsaAmxBf16 : kIsaAvx512Bf16;
}

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool& pool() {
  static ThreadPool p(default_threads());
  return p;
}

constexpr const char* kInvalidArgument = "ERR_DITFA_INVALID_ARGUMENT";
constexpr const char* kShapeMismatch = "ERR_DITFA_SHAPE_MISMATCH";
constexpr const char* kUnsupported = "ERR_DITFA_BACKEND_UNAVAILABLE";

struct ArgError {
  const char* code;
  std::string message;
};

[[noreturn]] void fail(const char* code, std::string message) { throw ArgError{code, std::move(message)}; }

void throw_js(Napi::Env env, const ArgError& e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  err.Value().Set("code", Napi::String::New(env, e.code));
  throw err;
}

std::string describe(const Napi::Value& v) {
  if (v.IsNumber()) return std::to_string(v.As<Napi::Number>().DoubleValue()) + " (number)";
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsString()) return "a string";
  return "a " + std::string(v.IsObject() ? "object" : "value");
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) fail(kInvalidArgument, std::string("Expected an integer for ") + name + " but received " + describe(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    fail(kInvalidArgument, std::string("Expected an integer in [") + std::to_string(lo) + ", " + std::to_string(hi) + "] for " + name +
                               " but received " + describe(v));
  }
  return static_cast<int64_t>(d);
}

struct F32 {
  float* data = nullptr;
  size_t length = 0;
};

F32 f32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    fail(kInvalidArgument, std::string("Expected a Float32Array for ") + name + " but received " + describe(v));
  }
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  return F32{a.Data(), a.ElementLength()};
}

bool overlaps(const F32& a, const F32& b) {
  if (a.length == 0 || b.length == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a.data), a1 = a0 + a.length * sizeof(float);
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(b.data), b1 = b0 + b.length * sizeof(float);
  return a0 < b1 && b0 < a1;
}

constexpr int64_t kMaxDim = int64_t{1} << 24;  // token indices stay exact in the float lane coordinates

// The argument list shared by runSync and runAsync:
//   (op, q, k, v, out, aux, B, Lq, Lkv, H, D, scale, compute, winKind, winSize, rows, cols, radius)
struct Call {
  AttnArgs args{};
  const KernelSet* kernels = nullptr;
  bool bf16 = false;
};

Call parse(const Napi::CallbackInfo& info) {
  if (info.Length() < 18) fail(kInvalidArgument, "Expected 18 arguments but received " + std::to_string(info.Length()));
  Call c;
  AttnArgs& a = c.args;
  a.op = static_cast<Op>(int_arg(info, 0, "op", 0, 3));
  const F32 q = f32_arg(info, 1, "q"), k = f32_arg(info, 2, "k"), v = f32_arg(info, 3, "v"), out = f32_arg(info, 4, "out"),
            aux = f32_arg(info, 5, "aux");
  a.B = int_arg(info, 6, "B", 0, kMaxDim);
  a.Lq = int_arg(info, 7, "Lq", 0, kMaxDim);
  a.Lkv = int_arg(info, 8, "Lkv", 0, kMaxDim);
  a.H = int_arg(info, 9, "H", 0, kMaxDim);
  a.D = int_arg(info, 10, "D", 1, kMaxHeadDim);
  if (!info[11].IsNumber() || !std::isfinite(info[11].As<Napi::Number>().DoubleValue())) {
    fail(kInvalidArgument, "Expected a finite number for scale but received " + describe(info[11]));
  }
  a.scale = static_cast<float>(info[11].As<Napi::Number>().DoubleValue());
  c.bf16 = int_arg(info, 12, "compute", 0, 1) == 1;
  a.win.kind = static_cast<int>(int_arg(info, 13, "window kind", 0, 2));
  a.win.size = int_arg(info, 14, "window size", 0, kMaxDim);
  a.win.rows = int_arg(info, 15, "grid rows", 0, kMaxDim);
  a.win.cols = int_arg(info, 16, "grid cols", 0, kMaxDim);
  a.win.radius = int_arg(info, 17, "window radius", 0, kMaxDim);

  // Sizes: each factor is at most 2^24, so the products are checked in 128-bit arithmetic.
  const __int128 nq = static_cast<__int128>(a.B) * a.Lq * a.H * a.D;
  const __int128 nkv = static_cast<__int128>(a.B) * a.Lkv * a.H * a.D;
  if (nq != static_cast<__int128>(q.length)) fail(kShapeMismatch, "Expected q to hold B·Lq·H·D elements but its length differs");
  if (nkv != static_cast<__int128>(k.length)) fail(kShapeMismatch, "Expected k to hold B·Lkv·H·D elements but its length differs");
  if (nkv != static_cast<__int128>(v.length)) fail(kShapeMismatch, "Expected v to hold B·Lkv·H·D elements but its length differs");
  if (nq != static_cast<__int128>(out.length)) fail(kShapeMismatch, "Expected out to hold B·Lq·H·D elements but its length differs");
  const bool needsAux = a.op == Op::FullResidual || a.op == Op::WindowResidual;
  if (needsAux ? nq != static_cast<__int128>(aux.length) : aux.length != 0) {
    fail(kShapeMismatch, needsAux ? "Expected the residual to hold B·Lq·H·D elements but its length differs" : "Expected an empty aux array for this op");
  }
  if (a.Lq > 0 && a.Lkv == 0) fail(kShapeMismatch, "Expected at least one key for a non-empty query but received Lkv = 0");
  for (const F32* in : {&q, &k, &v}) {
    if (overlaps(*in, out) || (a.op == Op::FullResidual && overlaps(*in, aux))) {
      fail(kInvalidArgument, "Expected output arrays that do not share memory with q, k or v");
    }
  }
  if (overlaps(out, aux)) fail(kInvalidArgument, "Expected out and the residual in separate memory");
  if (a.op == Op::Full) {
    if (a.win.kind != 0) fail(kInvalidArgument, "Expected window kind 0 for full attention");
  } else {
    if (a.Lq != a.Lkv) fail(kShapeMismatch, "Expected self-attention (Lq === Lkv) for window attention");
    if (a.win.kind == 0) fail(kInvalidArgument, "Expected window kind 1 (1-D) or 2 (2-D) for window attention but received 0");
    if (a.win.kind == 2) {
      if (a.win.rows < 1 || a.win.cols < 1) fail(kInvalidArgument, "Expected positive grid rows and cols");
      if (static_cast<__int128>(a.win.rows) * a.win.cols != a.Lq) {
        fail(kShapeMismatch, "Expected a " + std::to_string(a.win.rows) + "×" + std::to_string(a.win.cols) + " grid to hold L = " +
                                 std::to_string(a.Lq) + " tokens");
      }
    }
  }
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.out = out.data;
  a.aux = needsAux ? aux.data : nullptr;
  const int isa = c.bf16 ? best_bf16_isa() : (g_forced_isa >= 0 ? g_forced_isa : best_fp32_isa());
  if (!isa_supported(isa)) {
    fail(kUnsupported, c.bf16 ? "compute 'bf16' needs a CPU with AVX512-BF16 (and an addon built with it); use compute 'fp32'"
                              : "the forced instruction set is not supported on this CPU");
  }
  c.kernels = kernel_set(isa);
  return c;
}

BufferPool& buffer_pool();

// Runs a parsed call on the pool: bf16 conversion of K/V first (per batch row and head), then every
// (batch row, head, query tile) work item.
void execute(Call& c) {
  AttnArgs& a = c.args;
  if (a.B == 0 || a.Lq == 0 || a.H == 0) return;
  // bf16 copies of K and V, in blocks recycled through the buffer pool (already faulted in).
  struct Prep {
    void* p = nullptr;
    size_t n = 0;
    ~Prep() {
      if (p) buffer_pool().give(p, n);
    }
  } kb, vb;
  if (c.kernels->prepare != nullptr && c.kernels->prep_bytes_k(a) > 0) {
    kb.n = c.kernels->prep_bytes_k(a);
    vb.n = c.kernels->prep_bytes_v(a);
    kb.p = buffer_pool().take(kb.n);
    vb.p = buffer_pool().take(vb.n);
    if (!kb.p || !vb.p) throw std::bad_alloc();
    uint32_t* kp = static_cast<uint32_t*>(kb.p);
    uint32_t* vp = static_cast<uint32_t*>(vb.p);
    a.kb = kp;
    a.vb = vp;
    const AttnArgs& ca = a;
    const KernelSet* ks = c.kernels;
    pool().run(a.B * a.H, [&](int64_t i) { ks->prepare(ca, kp, vp, i / ca.H, i % ca.H); });
  }
  const int64_t tiles = c.kernels->tiles(a);
  const AttnArgs& ca = a;
  const KernelSet* ks = c.kernels;
  pool().run(a.B * a.H * tiles, [&](int64_t i) {
    const int64_t t = i % tiles, bh = i / tiles;
    ks->run_tile(ca, bh / ca.H, bh % ca.H, t);
  });
}

Napi::Value RunSync(const Napi::CallbackInfo& info) {
  Call c;
  try {
    c = parse(info);
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  try {
    execute(c);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, Call call, const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(env, "ditfa:attention"), call_(call), deferred_(Napi::Promise::Deferred::New(env)) {
    // Keep the typed arrays alive until the work is done.
    for (size_t i = 1; i <= 5; i++) refs_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      execute(call_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Call call_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Value RunAsync(const Napi::CallbackInfo& info) {
  Call c;
  try {
    c = parse(info);
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  RunWorker* w = new RunWorker(info.Env(), c, info);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value AbiVersion(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), kAbiVersion); }

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_features); }

// Bit i set when instruction-set path i (0 scalar, 1 avx2, 2 avx512, 3 avx512bf16) is built and runs here.
Napi::Value SupportedIsas(const Napi::CallbackInfo& info) {
  uint32_t m = 0;
  for (int i = 0; i <= kIsaAmxBf16; i++)
    if (isa_supported(i)) m |= 1u << i;
  return Napi::Number::New(info.Env(), m);
}

// The fp32 path in use: the forced one, or the best the CPU supports.
Napi::Value ActiveIsa(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), g_forced_isa >= 0 ? g_forced_isa : best_fp32_isa());
}

Napi::Value ForceIsa(const Napi::CallbackInfo& info) {
  try {
    const int64_t isa = int_arg(info, 0, "isa", -1, kIsaAvx512);
    if (isa >= 0 && !isa_supported(static_cast<int>(isa))) fail(kUnsupported, "instruction set " + std::to_string(isa) + " is not supported here");
    g_forced_isa = static_cast<int>(isa);
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

// The bf16 path in use, and forcing one (-1: automatic).
Napi::Value ActiveBf16Isa(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), best_bf16_isa()); }

Napi::Value ForceBf16Isa(const Napi::CallbackInfo& info) {
  try {
    const int64_t isa = int_arg(info, 0, "isa", -1, kIsaAmxBf16);
    if (isa >= 0 && isa != kIsaAvx512Bf16 && isa != kIsaAmxBf16) fail(kInvalidArgument, "Expected a bf16 path (3 avx512bf16, 4 amx-bf16) or -1");
    if (isa >= 0 && !isa_supported(static_cast<int>(isa))) fail(kUnsupported, "instruction set " + std::to_string(isa) + " is not supported here");
    g_forced_bf16_isa = static_cast<int>(isa);
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

Napi::Value ThreadCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool().size()); }

Napi::Value SetThreadCount(const Napi::CallbackInfo& info) {
  try {
    pool().resize(static_cast<int>(int_arg(info, 0, "threads", 1, 1024)));
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

Napi::Value DefaultThreadCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), default_threads()); }

// fp32 FMA peak in GFLOP/s of the best path, measured for `seconds` on every pool thread at once.
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  double seconds = 0;
  try {
    seconds = static_cast<double>(int_arg(info, 0, "milliseconds", 1, 60000)) / 1000.0;
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  const KernelSet* ks = kernel_set(best_fp32_isa());
  const int n = pool().size();
  std::vector<double> flops(static_cast<size_t>(n), 0.0);
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pool().run(n, [&](int64_t i) { flops[static_cast<size_t>(i)] = ks->fma_peak(seconds); });
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double total = 0;
  for (double f : flops) total += f;
  const double wall = static_cast<double>(t1.tv_sec - t0.tv_sec) + 1e-9 * static_cast<double>(t1.tv_nsec - t0.tv_nsec);
  return Napi::Number::New(info.Env(), total / wall / 1e9);
}


// ---------------------------------------------------------------------------------------------------
// Dense kernels (linear layers): see dense.h. Dense set ids: 0 fp32 (AVX-512), 1 bf16 (AVX512-BF16),
// 2 bf16 (AMX). Packed weights are JS-owned Uint8Arrays made by densePack with the same set.

constexpr int kDenseSets = 3;

const DenseSet* dense_set(int id) {
  switch (id) {
    case 0:
      return isa_supported(kIsaAvx512) ? dense_f32_avx512() : nullptr;
    case 1:
      return isa_supported(kIsaAvx512) && (g_features & kAvx512bf16) ? dense_bf16_avx512() : nullptr;
    case 2:
      return isa_supported(kIsaAvx512) && (g_features & kAvx512bf16) && (g_features & kAmxOs) ? dense_bf16_amx() : nullptr;
    default:
      return nullptr;
  }
}

const DenseSet* dense_set_arg(const Napi::CallbackInfo& info, size_t i) {
  const int id = static_cast<int>(int_arg(info, i, "dense set", 0, kDenseSets - 1));
  const DenseSet* set = dense_set(id);
  if (set == nullptr) fail(kUnsupported, "dense set " + std::to_string(id) + " is not available on this CPU (or not built)");
  return set;
}

struct U8 {
  uint8_t* data = nullptr;
  size_t length = 0;
};

U8 u8_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    fail(kInvalidArgument, std::string("Expected a Uint8Array for ") + name + " but received " + describe(v));
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  return U8{a.Data(), a.ElementLength()};
}

bool overlaps_bytes(const void* a, size_t an, const void* b, size_t bn) {
  if (an == 0 || bn == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a0 < b0 + bn && b0 < a0 + an;
}

// A per-sample vector table: (table, stride, offset) for `width` columns of `samples` samples.
SampleVec sample_vec_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t samples, int64_t width, bool optional) {
  const F32 t = f32_arg(info, i, name);
  const int64_t stride = int_arg(info, i + 1, "table stride", 0, kMaxDim);
  const int64_t offset = int_arg(info, i + 2, "table offset", 0, kMaxDim);
  if (t.length == 0) {
    if (!optional) fail(kShapeMismatch, std::string("Expected a non-empty table for ") + name);
    return SampleVec{nullptr, 0, 0};
  }
  const __int128 need = static_cast<__int128>(samples - 1) * stride + offset + width;
  if (samples > 0 && need > static_cast<__int128>(t.length)) {
    fail(kShapeMismatch, std::string("Expected the ") + name + " table to hold " + std::to_string(static_cast<int64_t>(need)) +
                             " floats for its samples but it holds " + std::to_string(t.length));
  }
  return SampleVec{t.data, stride, offset};
}

struct DenseCall {
  const DenseSet* set = nullptr;
  LinearArgs args{};
};

// (set, a, M, K, packed, N, bias, ln, shift, shiftStride, shiftOffset, scale, scaleStride, scaleOffset,
//  eps, rowsPerSample, epilogue, res, gate, gateStride, gateOffset, out0, out1, out2, out3)
constexpr size_t kLinearArgs = 25;

DenseCall parse_linear(const Napi::CallbackInfo& info) {
  if (info.Length() < kLinearArgs) fail(kInvalidArgument, "Expected " + std::to_string(kLinearArgs) + " arguments but received " + std::to_string(info.Length()));
  DenseCall c;
  c.set = dense_set_arg(info, 0);
  LinearArgs& a = c.args;
  const F32 A = f32_arg(info, 1, "a");
  a.M = int_arg(info, 2, "M", 0, kMaxDim);
  a.K = int_arg(info, 3, "K", 1, kMaxDim);
  const U8 W = u8_arg(info, 4, "packed weights");
  a.N = int_arg(info, 5, "N", 1, kMaxDim);
  const F32 bias = f32_arg(info, 6, "bias");
  a.ln = int_arg(info, 7, "ln", 0, 1) == 1;
  a.rows_per_sample = int_arg(info, 15, "rowsPerSample", 1, kMaxDim);
  const int64_t samples = (a.M + a.rows_per_sample - 1) / a.rows_per_sample;
  a.shift = sample_vec_arg(info, 8, "shift", samples, a.K, !a.ln);
  a.scale = sample_vec_arg(info, 11, "scale", samples, a.K, !a.ln);
  if (!info[14].IsNumber() || !(info[14].As<Napi::Number>().DoubleValue() > 0)) fail(kInvalidArgument, "Expected a positive eps but received " + describe(info[14]));
  a.eps = static_cast<float>(info[14].As<Napi::Number>().DoubleValue());
  a.epi = static_cast<Epilogue>(int_arg(info, 16, "epilogue", 0, 3));
  const F32 res = f32_arg(info, 17, "residual");
  a.gate = sample_vec_arg(info, 18, "gate", samples, a.N, a.epi != Epilogue::GatedResidual);
  F32 outs[kMaxDenseOutputs];
  a.nout = 0;
  for (int j = 0; j < kMaxDenseOutputs; j++) {
    outs[j] = f32_arg(info, 21 + j, "out");
    if (outs[j].length > 0) {
      if (a.nout != j) fail(kInvalidArgument, "Expected the non-empty outputs first");
      a.nout = j + 1;
    }
  }
  if (a.nout == 0) fail(kInvalidArgument, "Expected at least one output array");
  if (a.N % a.nout != 0) fail(kShapeMismatch, "Expected N to split evenly over the outputs");
  const __int128 mk = static_cast<__int128>(a.M) * a.K, mn = static_cast<__int128>(a.M) * a.N;
  if (mk != static_cast<__int128>(A.length)) fail(kShapeMismatch, "Expected a to hold M·K elements but its length differs");
  if (W.length != c.set->packed_bytes(a.K, a.N)) fail(kShapeMismatch, "Expected packed weights of " + std::to_string(c.set->packed_bytes(a.K, a.N)) + " bytes for this K, N and dense set but received " + std::to_string(W.length));
  if (bias.length != 0 && static_cast<int64_t>(bias.length) != a.N) fail(kShapeMismatch, "Expected N bias values or none");
  const bool needsRes = a.epi == Epilogue::GatedResidual || a.epi == Epilogue::Residual;
  if (needsRes ? mn != static_cast<__int128>(res.length) : res.length != 0) fail(kShapeMismatch, needsRes ? "Expected the residual to hold M·N elements" : "Expected an empty residual for this epilogue");
  if (needsRes && a.nout != 1) fail(kInvalidArgument, "Expected one output with a residual epilogue");
  for (int j = 0; j < a.nout; j++) {
    if (mn / a.nout != static_cast<__int128>(outs[j].length)) fail(kShapeMismatch, "Expected each output to hold M·N/outputs elements");
    if (overlaps(outs[j], A)) fail(kInvalidArgument, "Expected outputs that do not share memory with a");
    if (overlaps_bytes(outs[j].data, outs[j].length * 4, W.data, W.length)) fail(kInvalidArgument, "Expected outputs that do not share memory with the weights");
    // The residual may be the output itself (in place, element by element), never a shifted view of it.
    if (needsRes && res.data != outs[j].data && overlaps(outs[j], res)) fail(kInvalidArgument, "Expected the residual to be the output itself or separate from it");
    for (int i = 0; i < j; i++) if (overlaps(outs[i], outs[j])) fail(kInvalidArgument, "Expected outputs in separate memory");
  }
  a.a = A.data;
  a.lda = a.K;
  a.w = W.data;
  a.bias = bias.length ? bias.data : nullptr;
  a.res = needsRes ? res.data : nullptr;
  for (int j = 0; j < a.nout; j++) a.out[j] = outs[j].data;
  return c;
}

void execute_linear(const DenseCall& c) {
  const LinearArgs& a = c.args;
  if (a.M == 0) return;
  const int64_t rows = c.set->row_block(a, pool().size());
  const int64_t items = (a.M + rows - 1) / rows;
  const DenseSet* set = c.set;
  pool().run(items, [&](int64_t i) { set->run_rows(a, i * rows, std::min(a.M, (i + 1) * rows)); });
}

// (x, M, C, shift, shiftStride, shiftOffset, scale, scaleStride, scaleOffset, eps, rowsPerSample, out)
struct RowsCall {
  int kind = 0;  // 0: LayerNorm + modulate, 1: gated add
  const float* x = nullptr;
  const float* y = nullptr;
  int64_t M = 0, C = 0, rows_per_sample = 1;
  SampleVec shift{}, scale{}, gate{};
  float eps = 0;
  float* out = nullptr;
};

RowsCall parse_ln(const Napi::CallbackInfo& info) {
  if (info.Length() < 12) fail(kInvalidArgument, "Expected 12 arguments but received " + std::to_string(info.Length()));
  RowsCall c;
  const F32 x = f32_arg(info, 0, "x");
  c.M = int_arg(info, 1, "M", 0, kMaxDim);
  c.C = int_arg(info, 2, "C", 1, kMaxDim);
  c.rows_per_sample = int_arg(info, 10, "rowsPerSample", 1, kMaxDim);
  const int64_t samples = (c.M + c.rows_per_sample - 1) / c.rows_per_sample;
  c.shift = sample_vec_arg(info, 3, "shift", samples, c.C, false);
  c.scale = sample_vec_arg(info, 6, "scale", samples, c.C, false);
  if (!info[9].IsNumber() || !(info[9].As<Napi::Number>().DoubleValue() > 0)) fail(kInvalidArgument, "Expected a positive eps but received " + describe(info[9]));
  c.eps = static_cast<float>(info[9].As<Napi::Number>().DoubleValue());
  const F32 out = f32_arg(info, 11, "out");
  const __int128 mc = static_cast<__int128>(c.M) * c.C;
  if (mc != static_cast<__int128>(x.length) || mc != static_cast<__int128>(out.length)) fail(kShapeMismatch, "Expected x and out to hold M·C elements");
  if (overlaps(x, out) && x.data != out.data) fail(kInvalidArgument, "Expected out to be x itself or separate from it");
  c.x = x.data;
  c.out = out.data;
  return c;
}

// (x, y, M, C, gate, gateStride, gateOffset, rowsPerSample, out); an empty gate adds y as it is.
RowsCall parse_gated_add(const Napi::CallbackInfo& info) {
  if (info.Length() < 9) fail(kInvalidArgument, "Expected 9 arguments but received " + std::to_string(info.Length()));
  RowsCall c;
  c.kind = 1;
  const F32 x = f32_arg(info, 0, "x"), y = f32_arg(info, 1, "y");
  c.M = int_arg(info, 2, "M", 0, kMaxDim);
  c.C = int_arg(info, 3, "C", 1, kMaxDim);
  c.rows_per_sample = int_arg(info, 7, "rowsPerSample", 1, kMaxDim);
  const int64_t samples = (c.M + c.rows_per_sample - 1) / c.rows_per_sample;
  c.gate = sample_vec_arg(info, 4, "gate", samples, c.C, true);
  const F32 out = f32_arg(info, 8, "out");
  const __int128 mc = static_cast<__int128>(c.M) * c.C;
  if (mc != static_cast<__int128>(x.length) || mc != static_cast<__int128>(y.length) || mc != static_cast<__int128>(out.length)) {
    fail(kShapeMismatch, "Expected x, y and out to hold M·C elements");
  }
  for (const F32* in : {&x, &y}) {
    if (overlaps(*in, out) && in->data != out.data) fail(kInvalidArgument, "Expected out to be an input itself or separate from it");
  }
  c.x = x.data;
  c.y = y.data;
  c.out = out.data;
  return c;
}

void execute_rows(const RowsCall& c) {
  if (c.M == 0) return;
  const DenseSet* set = dense_f32_avx512();
  if (set == nullptr || !isa_supported(kIsaAvx512)) fail(kUnsupported, "the dense row kernels need AVX-512");
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(256, c.M / (8 * pool().size())));
  const int64_t items = (c.M + rows - 1) / rows;
  pool().run(items, [&](int64_t i) {
    const int64_t r0 = i * rows, r1 = std::min(c.M, r0 + rows);
    if (c.kind == 0) {
      set->ln_modulate_rows(c.x, c.C, c.shift, c.scale, c.eps, c.rows_per_sample, c.out, r0, r1);
    } else {
      set->gated_add_rows(c.x, c.y, c.C, c.gate, c.rows_per_sample, c.out, r0, r1);
    }
  });
}

// Runs `job` on a libuv worker and resolves a promise; keeps the typed arrays of `info` alive meanwhile.
class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::function<void()> job, const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(env, "ditfa:dense"), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    for (size_t i = 0; i < info.Length(); i++) {
      if (info[i].IsTypedArray()) refs_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      job_();
    } catch (const ArgError& e) {
      SetError(e.message);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::function<void()> job_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

template <typename Parsed>
Napi::Value run_job(const Napi::CallbackInfo& info, Parsed (*parse_fn)(const Napi::CallbackInfo&), void (*exec)(const Parsed&), bool async) {
  Parsed c;
  try {
    c = parse_fn(info);
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  if (!async) {
    try {
      exec(c);
    } catch (const ArgError& e) {
      throw_js(info.Env(), e);
    } catch (const std::exception& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }
  JobWorker* w = new JobWorker(info.Env(), [c, exec] { exec(c); }, info);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value DenseLinearSync(const Napi::CallbackInfo& info) { return run_job<DenseCall>(info, parse_linear, execute_linear, false); }
Napi::Value DenseLinearAsync(const Napi::CallbackInfo& info) { return run_job<DenseCall>(info, parse_linear, execute_linear, true); }
Napi::Value DenseLnModulateSync(const Napi::CallbackInfo& info) { return run_job<RowsCall>(info, parse_ln, execute_rows, false); }
Napi::Value DenseLnModulateAsync(const Napi::CallbackInfo& info) { return run_job<RowsCall>(info, parse_ln, execute_rows, true); }
Napi::Value DenseGatedAddSync(const Napi::CallbackInfo& info) { return run_job<RowsCall>(info, parse_gated_add, execute_rows, false); }
Napi::Value DenseGatedAddAsync(const Napi::CallbackInfo& info) { return run_job<RowsCall>(info, parse_gated_add, execute_rows, true); }

// Bit i set when dense set i is built and runs here.
Napi::Value DenseSets(const Napi::CallbackInfo& info) {
  uint32_t m = 0;
  for (int i = 0; i < kDenseSets; i++)
    if (dense_set(i) != nullptr) m |= 1u << i;
  return Napi::Number::New(info.Env(), m);
}

// (set, K, N) → bytes of the packed weights.
Napi::Value DensePackedBytes(const Napi::CallbackInfo& info) {
  try {
    const DenseSet* set = dense_set_arg(info, 0);
    const int64_t K = int_arg(info, 1, "K", 1, kMaxDim), N = int_arg(info, 2, "N", 1, kMaxDim);
    return Napi::Number::New(info.Env(), static_cast<double>(set->packed_bytes(K, N)));
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

// (set, w [N·K] float32 in PyTorch's [out, in] layout, K, N, out Uint8Array) packs on the pool, synchronously.
Napi::Value DensePack(const Napi::CallbackInfo& info) {
  try {
    if (info.Length() < 5) fail(kInvalidArgument, "Expected 5 arguments but received " + std::to_string(info.Length()));
    const DenseSet* set = dense_set_arg(info, 0);
    const F32 w = f32_arg(info, 1, "weights");
    const int64_t K = int_arg(info, 2, "K", 1, kMaxDim), N = int_arg(info, 3, "N", 1, kMaxDim);
    const U8 out = u8_arg(info, 4, "packed output");
    if (static_cast<__int128>(K) * N != static_cast<__int128>(w.length)) fail(kShapeMismatch, "Expected N·K weights");
    if (out.length != set->packed_bytes(K, N)) fail(kShapeMismatch, "Expected a packed output of densePackedBytes(set, K, N) bytes");
    if (overlaps_bytes(w.data, w.length * 4, out.data, out.length)) fail(kInvalidArgument, "Expected the packed output separate from the weights");
    const int64_t panels = set->panels(N);
    pool().run(panels, [&](int64_t p) { set->pack(w.data, K, N, out.data, p, p + 1); });
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// Output buffers from the recycling pool (buffer_pool.h): a Float32Array over pool memory, returned to
// the pool when the garbage collector finalizes it. Contents are not zeroed (every kernel writes all of
// its output). Runtimes without external ArrayBuffers get an ordinary Float32Array.

BufferPool& buffer_pool() {
  static BufferPool* p = new BufferPool();  // never destroyed: finalizers may run during shutdown
  return *p;
}

Napi::Value AllocFloat32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t length = 0;
  try {
    length = int_arg(info, 0, "length", 0, int64_t{1} << 40);
  } catch (const ArgError& e) {
    throw_js(env, e);
  }
  const size_t bytes = static_cast<size_t>(length) * sizeof(float);
  if (bytes < (size_t{64} << 10)) return Napi::Float32Array::New(env, static_cast<size_t>(length));  // small: V8's own allocator
  bool fresh = false;
  void* data = buffer_pool().take(bytes, &fresh);
  if (data == nullptr) throw Napi::Error::New(env, "out of memory allocating an output buffer");
  napi_value ab;
  // The garbage collector paces itself by the external memory it is told about. Only memory that the pool
  // takes from the system (and gives back to it) is reported: a recycled block adds nothing to the
  // process. Reporting every block made V8 run a full collection every ~60 ms (~9 ms each) in a
  // denoising loop, whose outputs are all recycled.
  const napi_status st = napi_create_external_arraybuffer(
      env, data, bytes,
      [](napi_env e, void* d, void* hint) {
        const size_t n = reinterpret_cast<uintptr_t>(hint);
        if (buffer_pool().give(d, n)) {
          int64_t unused;
          napi_adjust_external_memory(e, -static_cast<int64_t>(BufferPool::rounded(n)), &unused);
        }
      },
      reinterpret_cast<void*>(static_cast<uintptr_t>(bytes)), &ab);
  if (st != napi_ok) {
    buffer_pool().give(data, bytes);
    return Napi::Float32Array::New(env, static_cast<size_t>(length));
  }
  if (fresh) {
    int64_t unused;
    napi_adjust_external_memory(env, static_cast<int64_t>(BufferPool::rounded(bytes)), &unused);
  }
  return Napi::Float32Array::New(env, static_cast<size_t>(length), Napi::ArrayBuffer(env, ab), 0);
}

Napi::Value BufferPoolStats(const Napi::CallbackInfo& info) {
  const BufferPool::Stats s = buffer_pool().stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveBytes", static_cast<double>(s.live));
  o.Set("idleBytes", static_cast<double>(s.idle));
  o.Set("limitBytes", static_cast<double>(s.limit));
  o.Set("fresh", static_cast<double>(s.fresh));
  o.Set("reused", static_cast<double>(s.reused));
  return o;
}

Napi::Value SetBufferPoolLimit(const Napi::CallbackInfo& info) {
  try {
    buffer_pool().set_limit(static_cast<size_t>(int_arg(info, 0, "bytes", 0, int64_t{1} << 50)));
  } catch (const ArgError& e) {
    throw_js(info.Env(), e);
  }
  return info.Env().Undefined();
}

Napi::Value TrimBufferPool(const Napi::CallbackInfo& info) {
  buffer_pool().trim();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Function::New(env, AbiVersion));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("supportedIsas", Napi::Function::New(env, SupportedIsas));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa));
  exports.Set("forceIsa", Napi::Function::New(env, ForceIsa));
  exports.Set("activeBf16Isa", Napi::Function::New(env, ActiveBf16Isa));
  exports.Set("forceBf16Isa", Napi::Function::New(env, ForceBf16Isa));
  exports.Set("threadCount", Napi::Function::New(env, ThreadCount));
  exports.Set("setThreadCount", Napi::Function::New(env, SetThreadCount));
  exports.Set("defaultThreadCount", Napi::Function::New(env, DefaultThreadCount));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("runSync", Napi::Function::New(env, RunSync));
  exports.Set("runAsync", Napi::Function::New(env, RunAsync));
  exports.Set("allocFloat32", Napi::Function::New(env, AllocFloat32));
  exports.Set("bufferPoolStats", Napi::Function::New(env, BufferPoolStats));
  exports.Set("setBufferPoolLimit", Napi::Function::New(env, SetBufferPoolLimit));
  exports.Set("trimBufferPool", Napi::Function::New(env, TrimBufferPool));
  exports.Set("denseSets", Napi::Function::New(env, DenseSets));
  exports.Set("densePackedBytes", Napi::Function::New(env, DensePackedBytes));
  exports.Set("densePack", Napi::Function::New(env, DensePack));
  exports.Set("denseLinearSync", Napi::Function::New(env, DenseLinearSync));
  exports.Set("denseLinearAsync", Napi::Function::New(env, DenseLinearAsync));
  exports.Set("denseLnModulateSync", Napi::Function::New(env, DenseLnModulateSync));
  exports.Set("denseLnModulateAsync", Napi::Function::New(env, DenseLnModulateAsync));
  exports.Set("denseGatedAddSync", Napi::Function::New(env, DenseGatedAddSync));
  exports.Set("denseGatedAddAsync", Napi::Function::New(env, DenseGatedAddAsync));
  return exports;
}

}  // namespace
}  // namespace ditfa

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ditfa::Init(env, exports); }

NODE_API_MODULE(ditfa_kernels_cpu, InitAddon)
