"""The PyTorch contender of `pnpm bench:e2e` (packages/models-dit/bench/e2e.mjs): the same weights as
ditfa (a safetensors file in the official key names) and the same inputs, one process per contender so
its peak RSS is its own.

Usage: python3 tools/bench_torch_step.py CONFIG.json, with CONFIG:
  {"model": "dit" | "pixart", "config": {constructor kwargs}, "weights": path, "inputs": path,
   "mode": "fp32" | "bf16", "threads": n, "forwards": n, "output": path}
`inputs` holds x, t and y (DiT class labels) or captions and mask (PixArt). Serves the bench over
stdin/stdout so its runs interleave with the other contenders': the first line printed is
`ready <torch version> <threads> <load seconds>`; each `run` line runs `forwards` forwards and answers
their seconds (comma-separated); `quit` writes the last output (float32, raw) and answers
`rss <peak RSS in KiB>`. `bf16` is `torch.autocast("cpu", dtype=torch.bfloat16)` around the forward.
"""

import json
import os
import resource
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.dit_model import build_dit  # noqa: E402
from ditfa_tools.pixart_model import build_pixart  # noqa: E402


def main() -> None:
    cfg = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(cfg["threads"]))
    t0 = time.perf_counter()
    sd = load_file(cfg["weights"])
    if cfg["model"] == "dit":
        model = build_dit(cfg["config"])
        optional = {"pos_embed"}
    else:
        model = build_pixart(cfg["config"])
        optional = {"pos_embed", "y_embedder.y_embedding"}
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k not in optional}, strict=False)
    missing = [k for k in missing if k not in optional]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the module: missing {missing[:5]}, unexpected {unexpected[:5]}")
    del sd
    model.eval()
    io = load_file(cfg["inputs"])
    if cfg["model"] == "dit":
        args = (io["x"], io["t"].float(), io["y"].long())
    else:
        args = (io["x"], io["t"].float(), io["captions"], io["mask"])
    bf16 = cfg["mode"] == "bf16"
    out = None
    print(f"ready {torch.__version__} {torch.get_num_threads()} {time.perf_counter() - t0:.3f}", flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            times = []
            for _ in range(int(cfg["forwards"])):
                s = time.perf_counter()
                if bf16:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        out = model(*args)
                else:
                    out = model(*args)
                times.append(time.perf_counter() - s)
            print(",".join(f"{t:.6f}" for t in times), flush=True)
    if out is not None and cfg.get("output"):
        out.float().contiguous().numpy().tofile(cfg["output"])
    print(f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)


if __name__ == "__main__":
    main()
