"""PyTorch's scaled_dot_product_attention on the bench's own inputs (raw float32 [B, L, H, D] files).

Usage: python3 torch_sdpa.py CONFIG.json. The config names the input files, the sizes, the thread count,
the dtypes, the repetitions and where to write each output (for a correctness cross-check). Prints one
JSON line: median seconds per dtype and the torch version.
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
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": {}}
    for dtype_name in cfg["dtypes"]:
        dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
        qq, kk, vv = (t.to(dtype) for t in (q, k, v))
        with torch.inference_mode():
            out = F.scaled_dot_product_attention(qq, kk, vv, scale=cfg["scale"])
            times = []
            for _ in range(cfg["reps"]):
                t0 = time.perf_counter()
                out = F.scaled_dot_product_attention(qq, kk, vv, scale=cfg["scale"])
                times.append(time.perf_counter() - t0)
        times.sort()
        result["seconds"][dtype_name] = times[len(times) // 2]
        out.transpose(1, 2).to(torch.float32).contiguous().numpy().tofile(cfg["out"][dtype_name])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
