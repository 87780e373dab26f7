"""Measure the attention redundancies DiTFastAttn exploits on the STDiT3 video model, per site.

Runs one guided rectified-flow generation (30 steps, CFG as the bundle samples, batch [cond | null],
one clip per class from a fixed seed) and records, for every step, block and attention site
(spatial, spatial-cross, temporal, temporal-cross):

- locality (spatial self-attention): the fraction of each query's softmax mass within the 1-D window
  band |query - key| <= w, w = floor(S/8) tokens per side (the adapter's default window), averaged
  over queries, heads and rows; `band_area` is what a uniform attention would put there;
- step similarity: cosine similarity and METHOD.md's loss (MRAE) between the site's attention output
  (after the out-projection; what AST reuses) at this step and at the previous one;
- CFG similarity: the same two numbers between the conditional and the null-caption half (what ASC
  shares).

Writes analysis.json and redundancy.png to --out.

    python tools/analyze_video_attention.py --ckpt runs/stdit3/ckpt.pt --out runs/stdit3/analysis
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.loading import load_stdit3  # noqa: E402
from ditfa_tools.rflow import rflow_sample  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITES = {"spatial": ("spatial_block", "attn"), "spatial-cross": ("spatial_block", "cross_attn"),
         "temporal": ("temporal_block", "attn"), "temporal-cross": ("temporal_block", "cross_attn")}


def mrae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / (torch.maximum(a.abs(), b.abs()) + 1e-6)).clamp(0, 10).mean())


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "stdit3", "ckpt.pt"))
    ap.add_argument("--out", default=os.path.join(REPO, "runs", "stdit3", "analysis"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    model, config, dc, captions, step = load_stdit3(args.ckpt)
    T, H, W, C = dc["frames"], dc["canvas"], dc["canvas"], config["in_channels"]
    ph, pw = config["patch_size"][1], config["patch_size"][2]
    S = (H // ph) * (W // pw)
    w = S // 8
    idx = torch.arange(S)
    band = ((idx[:, None] - idx[None, :]).abs() <= w).float()
    depth = config["depth"]
    B = dc["num_classes"]
    cls = torch.arange(B)
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(B, C, T, H, W, generator=g)
    y = torch.cat([captions[cls], model.y_embedder.y_embedding[None].expand(B, -1, -1)], 0)[:, None]
    mask = torch.ones(B, y.shape[2], dtype=torch.int64)
    fps = torch.full((2 * B,), float(dc["fps"]))

    stats = {site: {"step_cos": [], "step_mrae": [], "cfg_cos": [], "cfg_mrae": [], "locality": []} for site in SITES}
    prev: dict = {}

    def model_fn(z_in, t_in, x_mask=None):
        rec: dict = {}
        model.record(rec, all_blocks=True)
        out = model(z_in, t_in, y, mask=mask, fps=fps, height=float(H), width=float(W)).float()
        model.record(None)
        for site, (kind, mod) in SITES.items():
            sc, sm, cc, cm, loc = [], [], [], [], []
            for i in range(depth):
                p = f"inter.{kind}.{i}.{mod}."
                o = rec[p + "out"]
                half = o.shape[0] // 2
                cc.append(cos(o[:half], o[half:]))
                cm.append(mrae(o[:half], o[half:]))
                if (site, i) in prev:
                    sc.append(cos(o, prev[(site, i)]))
                    sm.append(mrae(o, prev[(site, i)]))
                prev[(site, i)] = o
                if site == "spatial":
                    q, k = rec[p + "q_normed"], rec[p + "k_normed"]
                    a = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
                    loc.append(float((a * band).sum(-1).mean()))
            stats[site]["cfg_cos"].append(cc)
            stats[site]["cfg_mrae"].append(cm)
            stats[site]["step_cos"].append(sc if sc else None)
            stats[site]["step_mrae"].append(sm if sm else None)
            if loc:
                stats[site]["locality"].append(loc)
        return out

    with torch.no_grad():
        rflow_sample(model_fn, z, args.steps, args.cfg)

    summary = {}
    for site, s in stats.items():
        def mean(key):
            rows = [r for r in s[key] if r]
            return float(np.mean(rows)) if rows else None
        summary[site] = {"step_cos": mean("step_cos"), "step_mrae": mean("step_mrae"), "cfg_cos": mean("cfg_cos"),
                         "cfg_mrae": mean("cfg_mrae"), "locality": mean("locality")}
    doc = {"step": step, "clips": B, "steps": args.steps, "cfg": args.cfg, "window": w, "tokens_per_frame": S,
           "band_area": float(band.mean()), "summary": summary, "per_step": stats}
    with open(os.path.join(args.out, "analysis.json"), "w") as f:
        json.dump(doc, f)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    for site, s in stats.items():
        xs = [i for i, r in enumerate(s["step_cos"]) if r]
        ax[0].plot(xs, [np.mean(s["step_cos"][i]) for i in xs], label=site)
        ax[1].plot(range(len(s["cfg_cos"])), [np.mean(r) for r in s["cfg_cos"]], label=site)
    loc = stats["spatial"]["locality"]
    ax[2].plot(range(len(loc)), [np.mean(r) for r in loc], label="spatial: mass in the window")
    ax[2].axhline(float(band.mean()), color="gray", ls="--", label="uniform attention")
    ax[0].set_title("cos(attention output, previous step)")
    ax[1].set_title("cos(cond half, null half)")
    ax[2].set_title(f"spatial locality (w = {w} of {S} tokens)")
    for a in ax:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "redundancy.png"), dpi=80)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
