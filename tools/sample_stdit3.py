"""Progress probe for the STDiT3 video model: sample the EMA weights with RFLOW + CFG, write a PNG grid.

RFLOW exactly as Open-Sora 1.2 (`ditfa_tools.rflow.rflow_sample`, checked against the golden
sampler fixture): 30 Euler steps from t = 1000 to 0, no timestep transform (it maps every t to 0 for
clips shorter than 17 frames), batch [cond | null] with the learned null caption
(`y_embedder.y_embedding`) and the prompt's caption mask reused for the null half, guidance
v = v_null + cfg * (v_cond - v_null) on the velocity channels.

Default: 10 clips, one per class (row = clip in class order, column = frame). `--cond-frames k`
instead takes k real first frames of test clips and generates the rest (x_mask path; the real clips
are drawn in the rows below for comparison). Writes `<out>.png` (grid, 3x scale) and `<out>.npy`
(clips [N, 1, T, H, W] in [-1, 1]).

    python tools/sample_stdit3.py --ckpt runs/stdit3/ckpt.pt            # -> runs/stdit3/samples/step_XXXXXXX.png
    python tools/sample_stdit3.py --ckpt runs/stdit3/ema_0002000.pt --cond-frames 2

Cost: 30 steps x 2 (CFG) forwards of 10 clips: 170 s float32 at 1 thread, niced, next to the running
training on the shared 2-core machine; `--bf16` (autocast) was 1.4x faster in a 5-step test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import save_grid_png  # noqa: E402
from ditfa_tools.dit_model import FASHION_CLASSES  # noqa: E402
from ditfa_tools.loading import load_stdit3  # noqa: E402
from ditfa_tools.moving_fashion import clips_to_grid  # noqa: E402
from ditfa_tools.rflow import rflow_sample  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "stdit3", "ckpt.pt"))
    ap.add_argument("--raw", action="store_true", help="use the raw (non-EMA) weights of a ckpt.pt")
    ap.add_argument("--n", type=int, default=10, help="number of clips (classes cycle 0..9)")
    ap.add_argument("--classes", default=None, help="comma-separated class ids (overrides the cycle)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the model (faster on CPU, less exact)")
    ap.add_argument("--cond-frames", type=int, default=0,
                    help="condition on this many real first frames of test clips (0 = unconditional in time)")
    ap.add_argument("--score", action="store_true",
                    help="judge the clips with J1 and J2 (per-frame accuracy, Fréchet over frames) and write <out>.json")
    ap.add_argument("--batch", type=int, default=20, help="clips per forward batch (memory)")
    ap.add_argument("--out", default=None, help="output path without extension (default runs/stdit3/samples/step_N)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, config, dc, captions, step = load_stdit3(args.ckpt, use_ema=not args.raw)
    model.set_explicit_softmax(True)
    T, H, W, C = dc["frames"], dc["canvas"], dc["canvas"], config["in_channels"]
    if args.classes:
        cls = torch.tensor([int(c) for c in args.classes.split(",")])
    else:
        cls = torch.arange(args.n) % dc["num_classes"]
    B = len(cls)
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(B, C, T, H, W, generator=g)

    x_mask = x_cond = real = None
    if args.cond_frames:
        from ditfa_tools.data import load_split
        from ditfa_tools.moving_fashion import MovingFashion

        images, labels = load_split("test")
        ds = MovingFashion(images, labels, canvas=dc["canvas"], item=dc["item"], frames=T,
                           max_speed=dc["max_speed"], seed=args.seed)
        # the first test clip of each requested class
        idx = [int(np.flatnonzero(labels == int(c))[k // dc["num_classes"]]) for k, c in enumerate(cls.tolist())]
        real, _, _ = ds.batch(idx, epoch=0)
        x_mask = torch.arange(T)[None].expand(B, T) >= args.cond_frames
        x_cond = real

    y = torch.cat([captions[cls], model.y_embedder.y_embedding[None].expand(B, -1, -1)], 0)[:, None]
    mask = torch.ones(B, y.shape[2], dtype=torch.int64)  # every caption token valid; reused for the null half
    fps = torch.full((2 * B,), float(dc["fps"]))

    t0 = time.time()
    parts = []
    for i in range(0, B, args.batch):
        sl = slice(i, min(B, i + args.batch))
        yb = torch.cat([y[:B][sl], y[B:][sl]], 0)
        mb, fb = mask[sl], fps[: 2 * (sl.stop - sl.start)]

        def fn(z_in, t_in, x_mask=None, yb=yb, mb=mb, fb=fb):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                return model(z_in, t_in, yb, mask=mb, x_mask=x_mask, fps=fb, height=float(H), width=float(W)).float()

        parts.append(rflow_sample(fn, z[sl], args.steps, args.cfg,
                                  x_mask=None if x_mask is None else x_mask[sl],
                                  x_cond=None if x_cond is None else x_cond[sl]).clamp(-1, 1))
    out = torch.cat(parts, 0)
    dt = time.time() - t0

    path = args.out or os.path.join(REPO, "runs", "stdit3", "samples",
                                    f"step_{step:07d}" + (f"_cond{args.cond_frames}" if args.cond_frames else ""))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    grid = out if real is None else torch.cat([out, real], 0)
    save_grid_png(clips_to_grid(grid), path + ".png", nrow=T, scale=3)
    np.save(path + ".npy", out.numpy())
    if args.score:
        import json

        from ditfa_tools.video_judge import score_clips

        judges = [(n, os.path.join(REPO, "models", f"{f}.onnx"), os.path.join(REPO, "models", f"{f}-stats.safetensors"))
                  for n, f in (("J1", "fashion-classifier"), ("J2", "fashion-judge2"))]
        scores = score_clips(out.numpy(), cls.numpy(), judges)
        doc = {"step": step, "clips": B, "steps": args.steps, "cfg": args.cfg, "seed": args.seed, "bf16": args.bf16,
               "seconds": dt, "judges": scores}
        with open(path + ".json", "w") as f:
            json.dump(doc, f, indent=1)
        for n, sc in scores.items():
            print(f"{n}: per-frame accuracy {100 * sc['frame_accuracy']:.1f} %, Fréchet {sc['frechet']:.3f}, per class "
                  + " ".join(f"{100 * a:.0f}" for a in sc["per_class_frame_accuracy"] if a is not None))
    names = ", ".join(FASHION_CLASSES[int(c)] for c in cls[:10]) + (f", … ({B - 10} more)" if B > 10 else "")
    print(f"step {step}: {B} clips ({names}), {args.steps} RFLOW steps, cfg {args.cfg}, {dt:.1f} s -> {path}.png"
          + (" (rows below: the real clips)" if real is not None else ""))


if __name__ == "__main__":
    main()
