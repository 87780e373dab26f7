// The addon's whole native surface. Init below lists every export; src/binding.ts types them. Only
// typed arrays and numbers cross the boundary. Every argument is checked here again (the TypeScript
// layer checks first, with core's error classes) before any native memory is read or written.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

namespace ditfa {
namespace {

// Bumped whenever an export's signature or meaning changes; src/binding.ts checks it on load.
constexpr int kAbiVersion = 1;

enum Feature : uint32_t {
  kAvx2 = 1u << 0,
  kFma = 1u << 1,
  kAvx512f = 1u << 2,
  kAvx512bw = 1u << 3,
  kAvx512vl = 1u << 4,
  kAvx512dq = 1u << 5,
  kAvx512bf16 = 1u << 6,
};

enum Isa : int { kScalar = 0, kIsaAvx2 = 1, kIsaAvx512 = 2, kIsaAvx512Bf16 = 3 };

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
  const int isa = c.bf16 ? kIsaAvx512Bf16 : (g_forced_isa >= 0 ? g_forced_isa : best_fp32_isa());
  if (!isa_supported(isa)) {
    fail(kUnsupported, c.bf16 ? "compute 'bf16' needs a CPU with AVX512-BF16 (and an addon built with it); use compute 'fp32'"
                              : "the forced instruction set is not supported on this CPU");
  }
  c.kernels = kernel_set(isa);
  return c;
}

// Runs a parsed call on the pool: bf16 conversion of K/V first (per batch row and head), then every
// (batch row, head, query tile) work item.
void execute(Call& c) {
  AttnArgs& a = c.args;
  if (a.B == 0 || a.Lq == 0 || a.H == 0) return;
  std::unique_ptr<uint32_t[]> kb;
  std::unique_ptr<uint32_t[]> vb;
  if (c.kernels->prepare != nullptr) {
    kb.reset(new uint32_t[c.kernels->prep_bytes_k(a) / sizeof(uint32_t)]);
    vb.reset(new uint32_t[c.kernels->prep_bytes_v(a) / sizeof(uint32_t)]);
    a.kb = kb.get();
    a.vb = vb.get();
    const AttnArgs& ca = a;
    const KernelSet* ks = c.kernels;
    pool().run(a.B * a.H, [&](int64_t i) { ks->prepare(ca, kb.get(), vb.get(), i / ca.H, i % ca.H); });
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
  for (int i = 0; i <= kIsaAvx512Bf16; i++)
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Function::New(env, AbiVersion));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures));
  exports.Set("supportedIsas", Napi::Function::New(env, SupportedIsas));
  exports.Set("activeIsa", Napi::Function::New(env, ActiveIsa));
  exports.Set("forceIsa", Napi::Function::New(env, ForceIsa));
  exports.Set("threadCount", Napi::Function::New(env, ThreadCount));
  exports.Set("setThreadCount", Napi::Function::New(env, SetThreadCount));
  exports.Set("defaultThreadCount", Napi::Function::New(env, DefaultThreadCount));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("runSync", Napi::Function::New(env, RunSync));
  exports.Set("runAsync", Napi::Function::New(env, RunAsync));
  return exports;
}

}  // namespace
}  // namespace ditfa

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ditfa::Init(env, exports); }

NODE_API_MODULE(ditfa_kernels_cpu, InitAddon)
