#!/usr/bin/env python3
"""Device check of @ditfa/kernels-cuda without Node.js: parity and benchmark through ctypes.

Calls libditfa_cuda.so (the same library the node addon dlopens) on PyTorch's device pointers, so ours
and PyTorch's kernels run on the same tensors, in the same process, on the same stream.

1. parity against core's reference: bench/fixtures (written by scripts/make-fixtures.mjs from core's
   float64 reference kernels) for every storage type (f32, bf16, f16) and kernel path (SIMT, tensor cores);
2. parity against PyTorch's scaled_dot_product_attention at B=2, H=16, D=72, L in {1024, 4096, 16384},
   full and 1-D window w = L/8 (PyTorch with a band mask), bf16 storage: ours and PyTorch's bf16 output
   are both measured against an fp32 reference (SDPA's math backend on the upcast inputs, TF32 off);
3. benchmark: our full attention vs SDPA's flash backend (bf16), our window vs our full attention, and
   the fused / window+residual calls; medians of CUDA-event timings over rotating input sets.

Writes one JSON file (--out) with the device's description, every error and time, and the goals:
full >= 0.8x SDPA throughput, window speed-up >= 0.85x the ideal band ratio. Exit status 1 when a parity
check fails (the benchmark goals are reported, never fail the run).

  python3 bench/torch_parity.py --lib build/Release/libditfa_cuda.so --out result.json [--quick]
  python3 bench/torch_parity.py --check-generator   # CPU only: prints the fixture generator's checksum
"""

import argparse
import ctypes
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
F32, BF16, F16 = 0, 1, 2
PATH_AUTO, PATH_SIMT, PATH_TC, PATH_TC_MT1, PATH_TC_MT2 = 0, 1, 2, 3, 4
PATH_NAMES = ["auto", "simt", "tensor-core", "tc-64-rows", "tc-128-rows"]


# --- the fixture generator, mirrored from scripts/make-fixtures.mjs -------------------------------------

def mulberry32_values(seed, n):
    """(min(256, floor(r * 257)) - 128) / 64 for n draws of mulberry32(seed), as float32."""
    mask = 0xFFFFFFFF
    s = seed & mask
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        s = (s + 0x6D2B79F5) & mask
        t = s
        t = ((t ^ (t >> 15)) * (t | 1)) & mask
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & mask)) & mask)) & mask
        r = ((t ^ (t >> 14)) & mask) / 4294967296.0
        out[i] = (min(256, math.floor(r * 257)) - 128) / 64.0
    return out


# --- ctypes surface of native/ditfa_cuda.h --------------------------------------------------------------

class Window(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("size", ctypes.c_int64), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64), ("radius", ctypes.c_int64)]


class AttnArgs(ctypes.Structure):
    _fields_ = [
        ("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("out", ctypes.c_void_p),
        ("residual_in", ctypes.c_void_p), ("full_out", ctypes.c_void_p), ("dtype", ctypes.c_int32),
        ("B", ctypes.c_int64), ("Lq", ctypes.c_int64), ("Lkv", ctypes.c_int64), ("H", ctypes.c_int64), ("D", ctypes.c_int64),
        ("scale", ctypes.c_float), ("window", Window), ("path", ctypes.c_int32), ("stream", ctypes.c_void_p),
    ]


class DeviceInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char * 256), ("major", ctypes.c_int32), ("minor", ctypes.c_int32), ("multiprocessors", ctypes.c_int32),
        ("total_memory", ctypes.c_int64), ("shared_memory_per_block_optin", ctypes.c_int64), ("driver_version", ctypes.c_int32),
        ("runtime_version", ctypes.c_int32), ("device_count", ctypes.c_int32),
    ]


class Lib:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.ditfa_cuda_built_archs.restype = ctypes.c_char_p
        self.err = ctypes.create_string_buffer(1024)

    def check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: status {rc}: {self.err.value.decode()}")

    def probe(self):
        info = DeviceInfo()
        rc = self.lib.ditfa_cuda_probe(ctypes.byref(info), self.err, 1024)
        return rc, info, self.err.value.decode()

    def attention(self, q, k, v, out, dtype, scale, window=None, residual_in=None, full_out=None, path=PATH_AUTO):
        B, Lq, H, D = q.shape
        w = Window(0, 0, 0, 0, 0)
        if window is not None:
            if window["kind"] == "1d":
                w = Window(1, window["size"], 0, 0, 0)
            else:
                w = Window(2, 0, window["rows"], window["cols"], window["radius"])
        import torch
        a = AttnArgs(
            q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
            residual_in.data_ptr() if residual_in is not None else None,
            full_out.data_ptr() if full_out is not None else None,
            dtype, B, Lq, k.shape[1], H, D, scale, w, path, torch.cuda.current_stream().cuda_stream,
        )
        self.check(self.lib.ditfa_cuda_attention(ctypes.byref(a), self.err, 1024), "ditfa_cuda_attention")


def rel(a, b):
    """||a - b|| / ||b|| in float64; inf when a holds a non-finite value."""
    import torch
    a = a.double()
    b = b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def band_mask(L, w, device):
    import torch
    i = torch.arange(L, device=device)
    return (i[:, None] - i[None, :]).abs() <= w


def band_count(L, w):
    i = np.arange(L)
    return int((np.minimum(L - 1, i + w) - np.maximum(0, i - w) + 1).sum())


# --- 1. parity against core's reference (fixtures) -----------------------------------------------------

def fixture_parity(lib, results):
    import torch
    manifest = json.load(open(os.path.join(HERE, "fixtures", "manifest.json")))
    tol = {F32: 2e-5, BF16: 1e-2, F16: 3e-3}
    tdt = {F32: torch.float32, BF16: torch.bfloat16, F16: torch.float16}
    ok = True
    for case in manifest["cases"]:
        shape = case["shape"]
        n = int(np.prod(shape))
        q, k, v, res = (torch.from_numpy(mulberry32_values(case["seed"] + i, n)).reshape(shape).cuda() for i in range(4))
        ref = {key: torch.from_numpy(np.fromfile(os.path.join(HERE, "fixtures", f), dtype=np.float32)).reshape(shape).cuda()
               for key, f in case["files"].items()}
        ref["residual"] = ref["full"] - ref["window"]
        D = shape[3]
        for dtype in (F32, BF16, F16):
            tc_ok = dtype != F32 and D % 8 == 0 and D <= 128
            paths = [PATH_SIMT] + ([PATH_TC_MT1] if tc_ok else []) + ([PATH_TC_MT2] if tc_ok and D <= 80 else [])
            for path in paths:
                qd, kd, vd, rd = (x.to(tdt[dtype]) for x in (q, k, v, res))
                got = {}
                for op in ("full", "window", "fused", "windowWithResidual"):
                    out = torch.full(shape, float("nan"), device="cuda", dtype=tdt[dtype])
                    full_out = torch.full(shape, float("nan"), device="cuda", dtype=tdt[dtype]) if op == "fused" else None
                    # the fused call has one m-tile per warp only
                    op_path = PATH_TC_MT1 if (path == PATH_TC_MT2 and op == "fused") else path
                    lib.attention(qd, kd, vd, out, dtype, case["scale"], window=None if op == "full" else case["window"],
                                  residual_in=rd if op == "windowWithResidual" else None, full_out=full_out, path=op_path)
                    if op == "fused":
                        got["fused.full"] = full_out.float()
                        got["fused.residual"] = out.float()
                    else:
                        got[op] = out.float()
                torch.cuda.synchronize()
                outs = ref["full"].norm()
                errors = {
                    "full": rel(got["full"], ref["full"]),
                    "window": rel(got["window"], ref["window"]),
                    "fused.full": rel(got["fused.full"], ref["full"]),
                    # the residual is a difference of outputs: measured against the outputs' scale
                    "fused.residual": float((got["fused.residual"].double() - ref["residual"].double()).norm() / outs)
                    if torch.isfinite(got["fused.residual"]).all() else float("inf"),
                    "windowWithResidual": rel(got["windowWithResidual"], ref["windowWithResidual"]),
                }
                passed = all(e <= tol[dtype] for e in errors.values())
                ok &= passed
                row = {"case": case["name"], "dtype": ["f32", "bf16", "f16"][dtype], "path": PATH_NAMES[path],
                       "errors": errors, "tolerance": tol[dtype], "passed": passed}
                results["fixture_parity"].append(row)
                print(f"  reference {case['name']:7s} {row['dtype']:4s} {row['path']:11s} "
                      + " ".join(f"{k}={e:.1e}" for k, e in errors.items()) + ("  ok" if passed else "  FAIL"), flush=True)
    return ok


# --- 2. parity against PyTorch SDPA, 3. benchmark ----------------------------------------------------

def fp32_reference(q, k, v, mask):
    """SDPA math backend in fp32 (TF32 off), two heads at a time: [B, L, H, D] in and out."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    B, L, H, D = q.shape
    out = torch.empty(B, L, H, D, device=q.device, dtype=torch.float32)
    with sdpa_kernel(SDPBackend.MATH):
        for b in range(B):
            for h in range(0, H, 2):
                sl = slice(h, min(H, h + 2))
                qh, kh, vh = (x[b:b + 1, :, sl].float().transpose(1, 2) for x in (q, k, v))
                o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
                out[b:b + 1, :, sl] = o.transpose(1, 2)
    return out


def median_ms(fn, reps, warmup=3):
    import torch
    for _ in range(warmup):
        fn(0)
    torch.cuda.synchronize()
    times = []
    for r in range(reps):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn(r)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2], times


def torch_parity_and_bench(lib, results, sizes, reps):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    B, H, D = 2, 16, 72
    scale = 1.0 / math.sqrt(D)
    ok = True
    for L in sizes:
        w = L // 8
        g = torch.Generator(device="cuda").manual_seed(L)
        # Rotating input sets so the timings do not measure L2 hits on one buffer.
        sets = [tuple(torch.randn(B, L, H, D, device="cuda", generator=g).to(torch.bfloat16) for _ in range(3)) for _ in range(3)]
        q, k, v = sets[0]
        mask = band_mask(L, w, "cuda")
        out = torch.empty(B, L, H, D, device="cuda", dtype=torch.bfloat16)
        full_out = torch.empty_like(out)
        for kind in ("full", "window"):
            m = None if kind == "full" else mask
            ref = fp32_reference(q, k, v, m)
            out.fill_(float("nan"))
            lib.attention(q, k, v, out, BF16, scale, window=None if kind == "full" else {"kind": "1d", "size": w})
            ours = out.float()
            if kind == "full":
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    theirs = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v))).transpose(1, 2).float()
            else:
                theirs = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), attn_mask=mask).transpose(1, 2).float()
            torch.cuda.synchronize()
            e_ours, e_torch, e_vs = rel(ours, ref), rel(theirs, ref), rel(ours, theirs)
            # bf16 tolerance: 1e-2 absolute bound, and no worse than 2x PyTorch's own bf16 error (+1e-3).
            passed = e_ours <= 1e-2 and e_ours <= 2 * e_torch + 1e-3
            ok &= passed
            row = {"L": L, "B": B, "H": H, "D": D, "kind": kind, "window": w if kind == "window" else None,
                   "ours_vs_fp32": e_ours, "torch_bf16_vs_fp32": e_torch, "ours_vs_torch": e_vs, "passed": passed}
            results["torch_parity"].append(row)
            print(f"  sdpa L={L:5d} {kind:6s} ours={e_ours:.2e} torch-bf16={e_torch:.2e} ours-vs-torch={e_vs:.2e}" + ("  ok" if passed else "  FAIL"), flush=True)
            del ref, ours, theirs
        del mask
        torch.cuda.empty_cache()

        # Benchmark.
        flops = 4.0 * B * H * L * L * D
        band = band_count(L, w)
        ideal = (L * L) / band

        def ours_full(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale)

        def ours_full_mt1(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, path=PATH_TC_MT1)

        def ours_full_mt2(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, path=PATH_TC_MT2)

        def ours_window_mt1(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, window={"kind": "1d", "size": w}, path=PATH_TC_MT1)

        def ours_window_mt2(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, window={"kind": "1d", "size": w}, path=PATH_TC_MT2)

        def ours_window(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, window={"kind": "1d", "size": w})

        def ours_fused(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, window={"kind": "1d", "size": w}, full_out=full_out)

        def ours_wres(r):
            q_, k_, v_ = sets[r % 3]
            lib.attention(q_, k_, v_, out, BF16, scale, window={"kind": "1d", "size": w}, residual_in=full_out)

        def sdpa_flash(r):
            q_, k_, v_ = sets[r % 3]
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                F.scaled_dot_product_attention(q_.transpose(1, 2), k_.transpose(1, 2), v_.transpose(1, 2))

        t = {}
        for name, fn in (("sdpa_flash", sdpa_flash), ("ours_full", ours_full), ("ours_window", ours_window),
                         ("ours_full_with_residual", ours_fused), ("ours_window_with_residual", ours_wres),
                         ("variant_full_64_rows", ours_full_mt1), ("variant_full_128_rows", ours_full_mt2),
                         ("variant_window_64_rows", ours_window_mt1), ("variant_window_128_rows", ours_window_mt2)):
            t[name], _ = median_ms(fn, reps)
        # Time the reference point twice: the spread says what difference is noise.
        t["sdpa_flash_again"], _ = median_ms(sdpa_flash, reps)
        row = {
            "L": L, "B": B, "H": H, "D": D, "window": w, "median_ms": t,
            "tflops": {"sdpa_flash": flops / t["sdpa_flash"] / 1e9, "ours_full": flops / t["ours_full"] / 1e9},
            "full_vs_sdpa_throughput": t["sdpa_flash"] / t["ours_full"],
            "window_speedup": t["ours_full"] / t["ours_window"],
            "ideal_band_speedup": ideal,
            "window_fraction_of_ideal": (t["ours_full"] / t["ours_window"]) / ideal,
        }
        row["goals"] = {"full_ge_0.8x_sdpa": row["full_vs_sdpa_throughput"] >= 0.8, "window_ge_0.85x_ideal": row["window_fraction_of_ideal"] >= 0.85}
        results["bench"].append(row)
        print(f"  bench L={L:5d} sdpa={t['sdpa_flash']:.3f}/{t['sdpa_flash_again']:.3f} ms ours={t['ours_full']:.3f} ms "
              f"({row['full_vs_sdpa_throughput']:.2f}x sdpa, {row['tflops']['ours_full']:.0f} TFLOP/s) window={t['ours_window']:.3f} ms "
              f"(speed-up {row['window_speedup']:.2f} of ideal {ideal:.2f} = {row['window_fraction_of_ideal']:.2f}) "
              f"fused={t['ours_full_with_residual']:.3f} ms wres={t['ours_window_with_residual']:.3f} ms | full 64/128-row blocks "
              f"{t['variant_full_64_rows']:.3f}/{t['variant_full_128_rows']:.3f} ms, window {t['variant_window_64_rows']:.3f}/"
              f"{t['variant_window_128_rows']:.3f} ms", flush=True)
        del sets, out, full_out
        torch.cuda.empty_cache()
    return ok


def describe_device(lib_path):
    import torch
    p = torch.cuda.get_device_properties(0)
    smi = ""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit", "--format=csv"],
                             capture_output=True, text=True, timeout=30).stdout
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        smi = f"nvidia-smi failed: {e}"
    return {
        "name": p.name, "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
        "total_memory": p.total_memory, "l2_cache_bytes": getattr(p, "L2_cache_size", None),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "nvidia_smi": smi.strip(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "library": lib_path,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(HERE, "..", "build", "Release", "libditfa_cuda.so"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="fixtures and L=1024 only")
    ap.add_argument("--fixtures-only", action="store_true", help="parity against core's reference only (for compute-sanitizer)")
    ap.add_argument("--sizes", default="1024,4096,16384")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--check-generator", action="store_true")
    args = ap.parse_args()

    if args.check_generator:
        v = mulberry32_values(100, 100000)
        print(json.dumps({"seed": 100, "n": 100000, "sum": float(v.astype(np.float64).sum()), "first": v[:5].tolist()}))
        return 0

    lib = Lib(os.path.abspath(args.lib))
    rc, info, msg = lib.probe()
    archs = lib.lib.ditfa_cuda_built_archs().decode()
    if rc != 0:
        print(f"probe failed (status {rc}): {msg}", file=sys.stderr)
        return 2
    print(f"device: {info.name.decode()} sm_{info.major}{info.minor}, {info.multiprocessors} SMs, driver {info.driver_version}, "
          f"runtime {info.runtime_version}, library built for {archs}", flush=True)
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": describe_device(args.lib), "built_archs": archs,
               "fixture_parity": [], "torch_parity": [], "bench": []}
    ok = fixture_parity(lib, results)
    if args.fixtures_only:
        print("fixture parity: " + ("PASSED" if ok else "FAILED"))
        return 0 if ok else 1
    sizes = [1024] if args.quick else [int(s) for s in args.sizes.split(",")]
    ok &= torch_parity_and_bench(lib, results, sizes, args.reps)
    results["passed"] = bool(ok)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    print("parity: " + ("PASSED" if ok else "FAILED"))
    for row in results["bench"]:
        print(f"L={row['L']:5d}: full {row['full_vs_sdpa_throughput']:.2f}x SDPA flash (goal >= 0.8), "
              f"window {row['window_fraction_of_ideal']:.2f} of the ideal band speed-up (goal >= 0.85)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
