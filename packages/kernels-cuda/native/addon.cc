// The node addon of @ditfa/kernels-cuda. It holds no CUDA code and links no CUDA library: it dlopens
// libditfa_cuda.so (built by nvcc, static CUDA runtime) when asked to, so `require` of the addon works on
// any machine, and a missing library, driver or GPU becomes a status string instead of a load failure.
//
// Device memory is owned here: JavaScript gets small integer handles, and every call checks the handle
// and the byte counts against the allocation before any pointer reaches CUDA. Typed arrays and numbers
// cross the boundary, nothing else. Init lists every export.
#include <dlfcn.h>
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>

#include "ditfa_cuda.h"

namespace {

constexpr int kAddonAbi = 1;
constexpr size_t kErrLen = 1024;

struct Api {
  void* lib = nullptr;
  int (*abi_version)(void) = nullptr;
  const char* (*built_archs)(void) = nullptr;
  int (*probe)(DitfaDeviceInfo*, char*, size_t) = nullptr;
  int (*malloc_)(void**, int64_t, char*, size_t) = nullptr;
  int (*free_)(void*, char*, size_t) = nullptr;
  int (*upload)(void*, const void*, int64_t, char*, size_t) = nullptr;
  int (*download)(void*, const void*, int64_t, char*, size_t) = nullptr;
  int (*copy)(void*, const void*, int64_t, char*, size_t) = nullptr;
  int (*convert)(void*, int32_t, const void*, int32_t, int64_t, char*, size_t) = nullptr;
  int (*fill)(void*, int32_t, int64_t, float, char*, size_t) = nullptr;
  int (*cfg_copy)(void*, int64_t, int64_t, int32_t, char*, size_t) = nullptr;
  int (*attention)(const DitfaAttnArgs*, char*, size_t) = nullptr;
  int (*synchronize)(char*, size_t) = nullptr;
};

struct Buffer {
  void* ptr;
  int64_t bytes;
  int pending; // async operations in flight
};

Api g_api;
std::unordered_map<uint32_t, Buffer> g_buffers;
uint32_t g_next_handle = 1;

const char* status_name(int code) {
  switch (code) {
    case DITFA_ERR_INVALID: return "invalid";
    case DITFA_ERR_NO_DRIVER: return "no-driver";
    case DITFA_ERR_NO_DEVICE: return "no-device";
    case DITFA_ERR_UNSUPPORTED: return "unsupported";
    default: return "cuda";
  }
}

// Throws a JS Error carrying `status` ("invalid", "no-driver", "cuda", ...); returns undefined.
Napi::Value throw_status(Napi::Env env, int code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("status", Napi::String::New(env, status_name(code)));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value throw_invalid(Napi::Env env, const std::string& message) { return throw_status(env, DITFA_ERR_INVALID, message); }

bool require_api(Napi::Env env) {
  if (g_api.lib) return true;
  throw_status(env, DITFA_ERR_NO_DRIVER, "libditfa_cuda is not loaded (call open() first)");
  return false;
}

bool arg_int(const Napi::CallbackInfo& info, size_t i, int64_t& out, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    throw_invalid(info.Env(), std::string("expected a number for ") + name);
    return false;
  }
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d == static_cast<double>(static_cast<int64_t>(d))) || d < -9007199254740991.0 || d > 9007199254740991.0) {
    throw_invalid(info.Env(), std::string("expected an integer for ") + name);
    return false;
  }
  out = static_cast<int64_t>(d);
  return true;
}

Buffer* lookup(const Napi::CallbackInfo& info, size_t i, const char* name, bool allow_none = false) {
  int64_t h = 0;
  if (!arg_int(info, i, h, name)) return nullptr;
  if (h == 0 && allow_none) return nullptr;
  auto it = g_buffers.find(static_cast<uint32_t>(h));
  if (h <= 0 || it == g_buffers.end()) {
    throw_invalid(info.Env(), std::string("unknown or freed device tensor handle for ") + name + ": " + std::to_string(h));
    return nullptr;
  }
  return &it->second;
}

size_t dtype_bytes(int64_t dtype) { return dtype == DITFA_F32 ? 4 : 2; }

// open(path) -> '' on success, else the reason. Idempotent.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return throw_invalid(env, "expected a library path string");
  if (g_api.lib) return Napi::String::New(env, "");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    return Napi::String::New(env, std::string("dlopen failed: ") + (e ? e : "unknown error"));
  }
  Api api;
  api.lib = lib;
  std::string missing;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  sym(api.abi_version, "ditfa_cuda_abi_version");
  sym(api.built_archs, "ditfa_cuda_built_archs");
  sym(api.probe, "ditfa_cuda_probe");
  sym(api.malloc_, "ditfa_cuda_malloc");
  sym(api.free_, "ditfa_cuda_free");
  sym(api.upload, "ditfa_cuda_upload");
  sym(api.download, "ditfa_cuda_download");
  sym(api.copy, "ditfa_cuda_copy");
  sym(api.convert, "ditfa_cuda_convert");
  sym(api.fill, "ditfa_cuda_fill");
  sym(api.cfg_copy, "ditfa_cuda_cfg_copy");
  sym(api.attention, "ditfa_cuda_attention");
  sym(api.synchronize, "ditfa_cuda_synchronize");
  if (!missing.empty()) {
    dlclose(lib);
    return Napi::String::New(env, "libditfa_cuda lacks symbols: " + missing + " (rebuild the package)");
  }
  if (api.abi_version() != DITFA_CUDA_ABI_VERSION) {
    const int got = api.abi_version();
    dlclose(lib);
    return Napi::String::New(env, "libditfa_cuda ABI " + std::to_string(got) + " but the addon expects " + std::to_string(DITFA_CUDA_ABI_VERSION) +
                                      " (rebuild the package)");
  }
  g_api = api;
  return Napi::String::New(env, "");
}

// probe() -> { status: 'ok' | 'no-driver' | ..., message, device fields }
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  DitfaDeviceInfo dev;
  char err[kErrLen] = {0};
  const int rc = g_api.probe(&dev, err, kErrLen);
  Napi::Object o = Napi::Object::New(env);
  o.Set("status", Napi::String::New(env, rc == DITFA_OK ? "ok" : status_name(rc)));
  o.Set("message", Napi::String::New(env, err));
  o.Set("name", Napi::String::New(env, dev.name));
  o.Set("major", Napi::Number::New(env, dev.major));
  o.Set("minor", Napi::Number::New(env, dev.minor));
  o.Set("multiprocessors", Napi::Number::New(env, dev.multiprocessors));
  o.Set("totalMemory", Napi::Number::New(env, static_cast<double>(dev.total_memory)));
  o.Set("sharedMemoryPerBlockOptin", Napi::Number::New(env, static_cast<double>(dev.shared_memory_per_block_optin)));
  o.Set("driverVersion", Napi::Number::New(env, dev.driver_version));
  o.Set("runtimeVersion", Napi::Number::New(env, dev.runtime_version));
  o.Set("deviceCount", Napi::Number::New(env, dev.device_count));
  o.Set("builtArchs", Napi::String::New(env, g_api.built_archs()));
  return o;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  int64_t bytes = 0;
  if (!arg_int(info, 0, bytes, "bytes")) return env.Undefined();
  if (bytes < 0) return throw_invalid(env, "expected a non-negative byte count but received " + std::to_string(bytes));
  void* ptr = nullptr;
  char err[kErrLen] = {0};
  const int rc = g_api.malloc_(&ptr, bytes, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  const uint32_t h = g_next_handle++;
  g_buffers[h] = Buffer{ptr, bytes, 0};
  return Napi::Number::New(env, h);
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  if (b->pending > 0) return throw_invalid(env, "cannot free a device tensor while an async download from it is in flight");
  char err[kErrLen] = {0};
  const int rc = g_api.free_(b->ptr, err, kErrLen);
  g_buffers.erase(static_cast<uint32_t>(info[0].As<Napi::Number>().Int64Value()));
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// upload(handle, typedArray, byteOffset): copies the whole typed array to the buffer at byteOffset.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsTypedArray()) return throw_invalid(env, "expected a typed array to upload");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  int64_t offset = 0;
  if (!arg_int(info, 2, offset, "byteOffset")) return env.Undefined();
  const int64_t n = static_cast<int64_t>(ta.ByteLength());
  if (offset < 0 || offset + n > b->bytes) {
    return throw_invalid(env, "upload of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " exceeds the device tensor's " +
                                  std::to_string(b->bytes) + " bytes");
  }
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  char err[kErrLen] = {0};
  const int rc = g_api.upload(static_cast<uint8_t*>(b->ptr) + offset, src, n, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// download(handle, typedArray, byteOffset): fills the typed array from the buffer (waits for the device).
Napi::Value Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsTypedArray()) return throw_invalid(env, "expected a typed array to download into");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  int64_t offset = 0;
  if (!arg_int(info, 2, offset, "byteOffset")) return env.Undefined();
  const int64_t n = static_cast<int64_t>(ta.ByteLength());
  if (offset < 0 || offset + n > b->bytes) {
    return throw_invalid(env, "download of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) + " exceeds the device tensor's " +
                                  std::to_string(b->bytes) + " bytes");
  }
  uint8_t* dst = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  char err[kErrLen] = {0};
  const int rc = g_api.download(dst, static_cast<const uint8_t*>(b->ptr) + offset, n, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// The async twin of download: waits for the device and copies on a worker thread.
class DownloadWorker : public Napi::AsyncWorker {
 public:
  DownloadWorker(Napi::Env env, uint32_t handle, Buffer* buf, Napi::TypedArray target, int64_t offset)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), handle_(handle), src_(static_cast<const uint8_t*>(buf->ptr) + offset) {
    target_ = Napi::Persistent(target.ArrayBuffer());
    dst_ = static_cast<uint8_t*>(target.ArrayBuffer().Data()) + target.ByteOffset();
    bytes_ = static_cast<int64_t>(target.ByteLength());
    buf->pending++;
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    char err[kErrLen] = {0};
    rc_ = g_api.download(dst_, src_, bytes_, err, kErrLen);
    message_ = err;
  }
  void OnOK() override {
    release();
    if (rc_ == DITFA_OK) {
      deferred_.Resolve(Env().Undefined());
    } else {
      Napi::Error e = Napi::Error::New(Env(), message_);
      e.Set("status", Napi::String::New(Env(), status_name(rc_)));
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    release();
    deferred_.Reject(e.Value());
  }

 private:
  void release() {
    auto it = g_buffers.find(handle_);
    if (it != g_buffers.end() && it->second.pending > 0) it->second.pending--;
  }
  Napi::Promise::Deferred deferred_;
  uint32_t handle_;
  const uint8_t* src_;
  uint8_t* dst_ = nullptr;
  int64_t bytes_ = 0;
  Napi::Reference<Napi::ArrayBuffer> target_;
  int rc_ = DITFA_OK;
  std::string message_;
};

Napi::Value DownloadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsTypedArray()) return throw_invalid(env, "expected a typed array to download into");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  int64_t offset = 0;
  if (!arg_int(info, 2, offset, "byteOffset")) return env.Undefined();
  const int64_t n = static_cast<int64_t>(ta.ByteLength());
  if (offset < 0 || offset + n > b->bytes) return throw_invalid(env, "download exceeds the device tensor's " + std::to_string(b->bytes) + " bytes");
  auto* w = new DownloadWorker(env, static_cast<uint32_t>(info[0].As<Napi::Number>().Int64Value()), b, ta, offset);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// copy(dst, src, bytes): device-to-device.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* d = lookup(info, 0, "dst");
  if (!d) return env.Undefined();
  Buffer* s = lookup(info, 1, "src");
  if (!s) return env.Undefined();
  int64_t bytes = 0;
  if (!arg_int(info, 2, bytes, "bytes")) return env.Undefined();
  if (bytes < 0 || bytes > d->bytes || bytes > s->bytes) return throw_invalid(env, "copy of " + std::to_string(bytes) + " bytes exceeds a device tensor");
  char err[kErrLen] = {0};
  const int rc = g_api.copy(d->ptr, s->ptr, bytes, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// convert(dst, dstDtype, src, srcDtype, n)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* d = lookup(info, 0, "dst");
  if (!d) return env.Undefined();
  int64_t dd = 0, sd = 0, n = 0;
  if (!arg_int(info, 1, dd, "dstDtype")) return env.Undefined();
  Buffer* s = lookup(info, 2, "src");
  if (!s) return env.Undefined();
  if (!arg_int(info, 3, sd, "srcDtype") || !arg_int(info, 4, n, "n")) return env.Undefined();
  if (dd < 0 || dd > 2 || sd < 0 || sd > 2) return throw_invalid(env, "unknown dtype");
  if (n < 0 || n * static_cast<int64_t>(dtype_bytes(dd)) > d->bytes || n * static_cast<int64_t>(dtype_bytes(sd)) > s->bytes) {
    return throw_invalid(env, "convert of " + std::to_string(n) + " elements exceeds a device tensor");
  }
  char err[kErrLen] = {0};
  const int rc = g_api.convert(d->ptr, static_cast<int32_t>(dd), s->ptr, static_cast<int32_t>(sd), n, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// fill(handle, dtype, n, value)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  int64_t dt = 0, n = 0;
  if (!arg_int(info, 1, dt, "dtype") || !arg_int(info, 2, n, "n")) return env.Undefined();
  if (info.Length() < 4 || !info[3].IsNumber()) return throw_invalid(env, "expected a number for value");
  if (dt < 0 || dt > 2 || n < 0 || n * static_cast<int64_t>(dtype_bytes(dt)) > b->bytes) return throw_invalid(env, "fill exceeds the device tensor");
  char err[kErrLen] = {0};
  const int rc = g_api.fill(b->ptr, static_cast<int32_t>(dt), n, info[3].As<Napi::Number>().FloatValue(), err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// cfgCopy(handle, batch, rowBytes, condFirst)
Napi::Value CfgCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  Buffer* b = lookup(info, 0, "handle");
  if (!b) return env.Undefined();
  int64_t batch = 0, row = 0, first = 0;
  if (!arg_int(info, 1, batch, "batch") || !arg_int(info, 2, row, "rowBytes") || !arg_int(info, 3, first, "condFirst")) return env.Undefined();
  if (batch <= 0 || batch % 2 != 0 || row < 0 || batch * row > b->bytes) {
    return throw_invalid(env, "cfgCopy: expected an even, non-zero batch whose rows fit the device tensor");
  }
  char err[kErrLen] = {0};
  const int rc = g_api.cfg_copy(b->ptr, batch, row, first != 0 ? 1 : 0, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

// attention(q, k, v, out, residualIn, fullOut, dtype, B, Lq, Lkv, H, D, scale, winKind, winSize, rows, cols,
// radius, path). Handles 0 mean "none" for residualIn and fullOut.
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  const char* names[] = {"q", "k", "v", "out"};
  Buffer* t[4];
  for (int i = 0; i < 4; ++i) {
    t[i] = lookup(info, i, names[i]);
    if (!t[i]) return env.Undefined();
  }
  Buffer* res = lookup(info, 4, "residualIn", true);
  if (env.IsExceptionPending()) return env.Undefined();
  Buffer* full = lookup(info, 5, "fullOut", true);
  if (env.IsExceptionPending()) return env.Undefined();
  int64_t v[13] = {0};
  const char* vn[] = {"dtype", "B", "Lq", "Lkv", "H", "D"};
  for (int i = 0; i < 6; ++i)
    if (!arg_int(info, 6 + i, v[i], vn[i])) return env.Undefined();
  if (info.Length() < 13 || !info[12].IsNumber()) return throw_invalid(env, "expected a number for scale");
  const float scale = info[12].As<Napi::Number>().FloatValue();
  const char* wn[] = {"winKind", "winSize", "rows", "cols", "radius", "path"};
  int64_t w[6] = {0};
  for (int i = 0; i < 6; ++i)
    if (!arg_int(info, 13 + i, w[i], wn[i])) return env.Undefined();
  const int64_t dtype = v[0], B = v[1], Lq = v[2], Lkv = v[3], H = v[4], D = v[5];
  if (dtype < 0 || dtype > 2 || B < 0 || Lq < 0 || Lkv < 0 || H < 0 || D < 0) return throw_invalid(env, "attention: negative size or unknown dtype");
  const int64_t es = static_cast<int64_t>(dtype_bytes(dtype));
  const int64_t qbytes = B * Lq * H * D * es, kvbytes = B * Lkv * H * D * es;
  if (t[0]->bytes < qbytes || t[1]->bytes < kvbytes || t[2]->bytes < kvbytes || t[3]->bytes < qbytes || (res && res->bytes < qbytes) ||
      (full && full->bytes < qbytes)) {
    return throw_invalid(env, "attention: a device tensor is smaller than its shape needs");
  }
  DitfaAttnArgs a;
  std::memset(&a, 0, sizeof(a));
  a.q = t[0]->ptr;
  a.k = t[1]->ptr;
  a.v = t[2]->ptr;
  a.out = t[3]->ptr;
  a.residual_in = res ? res->ptr : nullptr;
  a.full_out = full ? full->ptr : nullptr;
  a.dtype = static_cast<int32_t>(dtype);
  a.B = B;
  a.Lq = Lq;
  a.Lkv = Lkv;
  a.H = H;
  a.D = D;
  a.scale = scale;
  a.window.kind = static_cast<int32_t>(w[0]);
  a.window.size = w[1];
  a.window.rows = w[2];
  a.window.cols = w[3];
  a.window.radius = w[4];
  a.path = static_cast<int32_t>(w[5]);
  a.stream = nullptr;
  char err[kErrLen] = {0};
  const int rc = g_api.attention(&a, err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!require_api(env)) return env.Undefined();
  char err[kErrLen] = {0};
  const int rc = g_api.synchronize(err, kErrLen);
  if (rc != DITFA_OK) return throw_status(env, rc, err);
  return env.Undefined();
}

Napi::Value LiveBuffers(const Napi::CallbackInfo& info) {
  double bytes = 0;
  for (const auto& kv : g_buffers) bytes += static_cast<double>(kv.second.bytes);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("count", Napi::Number::New(info.Env(), static_cast<double>(g_buffers.size())));
  o.Set("bytes", Napi::Number::New(info.Env(), bytes));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, kAddonAbi));
  exports.Set("libAbiVersion", Napi::Number::New(env, DITFA_CUDA_ABI_VERSION));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("alloc", Napi::Function::New(env, Alloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, Free, "free"));
  exports.Set("upload", Napi::Function::New(env, Upload, "upload"));
  exports.Set("download", Napi::Function::New(env, Download, "download"));
  exports.Set("downloadAsync", Napi::Function::New(env, DownloadAsync, "downloadAsync"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("cfgCopy", Napi::Function::New(env, CfgCopy, "cfgCopy"));
  exports.Set("attention", Napi::Function::New(env, Attention, "attention"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  exports.Set("liveBuffers", Napi::Function::New(env, LiveBuffers, "liveBuffers"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ditfa_cuda_addon, Init)
