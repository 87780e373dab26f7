"""PyTorch's scaled_dot_product_attention on the bench's own inputs (raw float32 [B, L, H, D] files).

Usage: python3 torch_sdpa.py CONFIG.json. Loads the inputs named in the config, then serves the bench
over stdin/stdout so it can interleave PyTorch's runs with the other contenders': each line `fp32` or
`bf16` runs one call and answers its seconds; `quit` writes each dtype's last output (for the bench's
correctness cross-check) and exits. The first line printed is `ready <torch version> <threads>`.
"""
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    cfg = json.load(open(sys.argv[1]))
    torch.set_num_threads(cfg["threads"])
    B, L, H, D = cfg["B"], cfg["L"], cfg["H"], cfg["D"]

    def load(path: str) -> torch.Tensor:
        # [B, L, H, D] as written by the bench; SDPA wants [B, H, L, D]: a strided view, no copy.
        return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(B, L, H, D)).transpose(1, 2)

    q, k, v = load(cfg["q"]), load(cfg["k"]), load(cfg["v"])
    inputs = {
        "fp32": (q, k, v),
        "bf16": tuple(t.to(torch.bfloat16) for t in (q, k, v)),
    }
    outputs = {}
    print(f"ready {torch.__version__} {torch.get_num_threads()}", flush=True)
    with torch.inference_mode():
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                break
            qq, kk, vv = inputs[cmd]
            t0 = time.perf_counter()
            out = F.scaled_dot_product_attention(qq, kk, vv, scale=cfg["scale"])
            seconds = time.perf_counter() - t0
            outputs[cmd] = out
            print(f"{seconds:.9f}", flush=True)
    for name, out in outputs.items():
        out.transpose(1, 2).to(torch.float32).contiguous().numpy().tofile(cfg["out"][name])


if __name__ == "__main__":
    main()
