"""Measure the attention redundancies DiTFastAttn exploits, on the trained DiT.

Runs one CFG generation (DPM-Solver++ 2M by default, 50 steps, guidance 4, batch [cond | uncond],
n samples from a fixed seed) and records, for every step and block:

- locality: fraction of the softmax mass of each query that falls in the window band
  |query - key| <= w, w = L/8 tokens per side (METHOD.md WA-RS), averaged over queries, heads and
  the batch; `band_area` is the fraction a uniform attention would put there;
- temporal: cosine similarity and relative L2 error between the block's attention output (after
  the out-projection, before the gate; what AST caches) at this step and at the previous step;
- cfg: the same two numbers between the conditional and the unconditional half of the batch
  (what ASC shares);
- mrae: METHOD.md's loss L(O, O') = mean clip(|O-O'| / (max(|O|,|O'|)+1e-6), 0, 10) for both.

Writes analysis.json, attention_maps.png (a few heads at a few steps) and redundancy.png to --out.

    python tools/analyze_attention.py --ckpt runs/dit/ckpt.pt --out runs/analysis
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.diffusion import cfg_eps_fn, ddim_sample, dpmpp2m_sample  # noqa: E402
from ditfa_tools.loading import load_dit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mrae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / (torch.maximum(a.abs(), b.abs()) + 1e-6)).clamp(0, 10).mean())


def cos_rel(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).mean().item()
    rel = ((a - b).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)).mean().item()
    return cos, rel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "dit", "ckpt.pt"))
    ap.add_argument("--sampler", choices=["ddim", "dpmpp2m"], default="dpmpp2m")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--n", type=int, default=8, help="samples (classes 0..9 cycled)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--map-steps", default="0,24,49", help="step indices whose attention maps are drawn")
    ap.add_argument("--map-heads", default="0:0,2:1,5:2", help="block:head pairs drawn")
    ap.add_argument("--out", default=os.path.join(REPO, "runs", "analysis"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    model, config, step = load_dit(args.ckpt)
    nc = config["num_classes"]
    L = (config["input_size"] // config["patch_size"]) ** 2
    w = L // 8
    idx = torch.arange(L)
    band = ((idx[:, None] - idx[None, :]).abs() <= w).float()  # [L, L]
    band_area = float(band.mean())
    depth = len(model.blocks)
    map_steps = [int(s) for s in args.map_steps.split(",")]
    map_heads = [tuple(int(v) for v in p.split(":")) for p in args.map_heads.split(",")]

    g = torch.Generator().manual_seed(args.seed)
    y = torch.arange(args.n) % nc
    xT = torch.randn((args.n, config["in_channels"], config["input_size"], config["input_size"]), generator=g)
    for blk in model.blocks:
        blk.attn.record = []
        blk.record_attn_out = []
    base = cfg_eps_fn(model, y, args.cfg, nc)
    rows: list = []
    maps: dict = {}
    prev: list = [None] * depth
    state = {"i": 0}

    def eps_fn(x, t):
        e = base(x, t)
        i = state["i"]
        for b, blk in enumerate(model.blocks):
            attn = blk.attn.record.pop()  # [2n, H, L, L]
            out = blk.record_attn_out.pop()  # [2n, L, C]
            loc = float((attn * band).sum(-1).mean())
            n = out.shape[0] // 2
            c_cos, c_rel = cos_rel(out[:n], out[n:])
            row = {"step": i, "t": int(t), "block": b, "locality": loc,
                   "locality_cond": float((attn[:n] * band).sum(-1).mean()),
                   "cfg_cos": c_cos, "cfg_rel": c_rel, "cfg_mrae": mrae(out[:n], out[n:])}
            if prev[b] is not None:
                t_cos, t_rel = cos_rel(out, prev[b])
                row.update({"temporal_cos": t_cos, "temporal_rel": t_rel, "temporal_mrae": mrae(out, prev[b])})
            prev[b] = out
            rows.append(row)
            if i in map_steps:
                for (mb, mh) in map_heads:
                    if mb == b:
                        maps[(i, mb, mh)] = (int(t), attn[0, mh].numpy())
        state["i"] += 1
        return e

    fn = ddim_sample if args.sampler == "ddim" else dpmpp2m_sample
    fn(eps_fn, xT, steps=args.steps)

    def avg(key, sel=lambda r: True):
        v = [r[key] for r in rows if key in r and sel(r)]
        return float(np.mean(v)) if v else None

    summary = {
        "checkpoint": args.ckpt, "training_step": step, "sampler": args.sampler, "steps": args.steps,
        "cfg": args.cfg, "n": args.n, "seed": args.seed, "tokens": L, "window_per_side": w,
        "band_area": band_area,
        "mean": {k: avg(k) for k in ["locality", "temporal_cos", "temporal_rel", "temporal_mrae",
                                      "cfg_cos", "cfg_rel", "cfg_mrae"]},
        "per_block": {b: {k: avg(k, lambda r, b=b: r["block"] == b) for k in
                          ["locality", "temporal_cos", "temporal_rel", "cfg_cos", "cfg_rel"]} for b in range(depth)},
        "by_phase": {
            ph: {k: avg(k, lambda r, lo=lo, hi=hi: lo <= r["step"] < hi) for k in
                 ["locality", "temporal_rel", "cfg_rel"]}
            for ph, (lo, hi) in {"first_third": (0, args.steps // 3),
                                  "middle_third": (args.steps // 3, 2 * args.steps // 3),
                                  "last_third": (2 * args.steps // 3, args.steps)}.items()
        },
    }
    with open(os.path.join(args.out, "analysis.json"), "w") as f:
        json.dump({"summary": summary, "rows": rows}, f, indent=1)
        f.write("\n")
    print(json.dumps(summary, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # attention maps
    fig, axes = plt.subplots(len(map_heads), len(map_steps), figsize=(3.2 * len(map_steps), 3.2 * len(map_heads)))
    axes = np.atleast_2d(axes)
    for r, (mb, mh) in enumerate(map_heads):
        for c, s in enumerate(map_steps):
            ax = axes[r, c]
            if (s, mb, mh) in maps:
                t, m = maps[(s, mb, mh)]
                ax.imshow(np.log10(m + 1e-6), cmap="viridis", vmin=-4, vmax=0)
                ax.set_title(f"block {mb} head {mh}, step {s} (t={t})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"log10 attention, cond sample 0 (class {int(y[0])}), rows=queries, cols=keys ({L} tokens)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "attention_maps.png"), dpi=60)
    plt.close(fig)

    # redundancy curves
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for b in range(depth):
        rb = [r for r in rows if r["block"] == b]
        axes[0].plot([r["step"] for r in rb], [r["locality"] for r in rb], label=f"block {b}")
        rt = [r for r in rb if "temporal_rel" in r]
        axes[1].plot([r["step"] for r in rt], [r["temporal_rel"] for r in rt], label=f"block {b}")
        axes[2].plot([r["step"] for r in rb], [r["cfg_rel"] for r in rb], label=f"block {b}")
    axes[0].axhline(band_area, color="k", ls=":", label="uniform")
    axes[0].set_title(f"attention mass within |q-k|<={w}")
    axes[1].set_title("rel. L2 change of attn output vs previous step")
    axes[2].set_title("rel. L2 difference cond vs uncond")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("sampling step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "redundancy.png"), dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
