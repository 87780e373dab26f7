"""Export the trained STDiT3 video model to models/fashion-stdit3/ (what the TypeScript side loads).

Writes:
- `model.safetensors`: the EMA weights under the official Open-Sora v1.2 key names, stored as float16
  (keeps the bundle under 20 MB; everything else is computed from these rounded weights);
- `config.json`: the official STDiT3 config fields (`model_type` "STDiT3", `in_channels`, `patch_size`,
  `hidden_size`, `depth`, `num_heads`, `mlp_ratio`, `caption_channels`, `model_max_length`,
  `input_sq_size`, `qk_norm`, `pred_sigma`) plus a `ditfa` section: pixel space (no VAE: the latents
  are the frames), the clip size and fps the model was trained on, its sampling (rectified flow,
  30 steps, no timestep transform, CFG) and the class captions file;
- `captions.safetensors`: the fixed class "captions" `captions` [10, L, C] and `mask` [10, L];
- `golden.safetensors`: inputs and outputs of this model in PyTorch for the TypeScript loader's test
  (one forward with CFG-ordered captions, and a 3-step RFLOW sample with guidance from given noise);
- `train_log.jsonl`, `loss_curve.png`, and with `--eval`, the sample grid / animation and scores of a
  `sample_stdit3.py --score` run; `README.md` (the model card).

    python tools/sample_stdit3.py --n 200 --bf16 --score --out runs/stdit3/eval/raw200
    python tools/export_video_model.py --ckpt runs/stdit3/ckpt.pt --eval runs/stdit3/eval/raw200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.dit_model import FASHION_CLASSES  # noqa: E402
from ditfa_tools.loading import load_stdit3  # noqa: E402
from ditfa_tools.rflow import rflow_sample  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLING = {"sampler": "rflow", "steps": 30, "guidance": 4.0, "timestep_transform": False}


def golden(model, config, dc, captions) -> dict:
    """A forward and a short guided sample of this model in float32 (PyTorch), for the TS loader's test."""
    T, H, W, C = dc["frames"], dc["canvas"], dc["canvas"], config["in_channels"]
    g = torch.Generator().manual_seed(1234)
    cls = torch.tensor([3, 7])
    B = len(cls)
    null = model.y_embedder.y_embedding[None].expand(B, -1, -1)
    y = torch.cat([captions[cls], null], 0)[:, None]  # [2B, 1, L, C]: [cond | null], as the sampler calls it
    mask = torch.ones(B, y.shape[2], dtype=torch.int64)
    fps = torch.full((2 * B,), float(dc["fps"]))
    x = torch.randn(2 * B, C, T, H, W, generator=g)
    t = torch.tensor([937.5, 120.25, 937.5, 120.25])
    with torch.no_grad():
        out = model(x, t, y, mask=mask, fps=fps, height=float(H), width=float(W)).float()
    z = torch.randn(B, C, T, H, W, generator=g)

    def fn(z_in, t_in, x_mask=None):
        return model(z_in, t_in, y, mask=mask, fps=fps, height=float(H), width=float(W)).float()

    steps, cfg = 3, SAMPLING["guidance"]
    sample = rflow_sample(fn, z, steps, cfg)
    return {
        "forward.x": x, "forward.t": t, "forward.classes": torch.cat([cls, cls]).to(torch.int64), "forward.out": out,
        "sample.noise": z, "sample.classes": cls.to(torch.int64), "sample.out": sample,
        "sample.steps": torch.tensor([steps]), "sample.guidance": torch.tensor([cfg]),
    }


def plot_loss(log: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in log])
    loss = np.asarray([r["loss"] for r in log], dtype=np.float64)
    k = 20
    sm = np.convolve(loss, np.ones(k) / k, mode="valid") if len(loss) >= k else loss
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, alpha=0.25, color="C0", label="10-step mean")
    ax.plot(steps[len(steps) - len(sm):], sm, color="C0", label=f"moving average ({k})")
    ax.set_yscale("log")
    ax.set_xlabel("step (batch 32 clips)")
    ax.set_title("rectified-flow loss (velocity MSE)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_animation(clips: np.ndarray, path: str, columns: int = 10, scale: int = 2, fps: int = 8) -> None:
    """clips [N, 1, T, H, W] in [-1, 1] -> APNG: animation frame t shows frame t of every clip in a grid."""
    from PIL import Image

    n, _, t, h, w = clips.shape
    rows = -(-n // columns)
    pad = 2
    frames = []
    for f in range(t):
        canvas = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.uint8)
        for i in range(n):
            r, c = divmod(i, columns)
            img = np.clip((clips[i, 0, f] + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
            canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
        frames.append(Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST))
    frames[0].save(path, format="PNG", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "stdit3", "ckpt.pt"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "fashion-stdit3"))
    ap.add_argument("--eval", default=None, help="a sample_stdit3.py --score output path (without extension)")
    ap.add_argument("--analysis", default=None, help="an analyze_video_attention.py output folder")
    ap.add_argument("--status", default="", help="a sentence on the training state for the model card")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    model, config, dc, captions, step = load_stdit3(args.ckpt)
    model.set_explicit_softmax(True)
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    log = [r for r in ck.get("log", []) if r["step"] <= step]
    targs = ck.get("args", {})

    from safetensors.torch import save_file

    # float16 storage keeps the bundle under 20 MB (5.2 M parameters); the model is then run from exactly
    # these rounded weights (the golden below comes from them too)
    # (rope.freqs, the fixed rotary frequencies, stays float32 as Open-Sora computes it)
    sd = {k: v.detach().to(torch.float32 if k == "rope.freqs" else torch.float16).contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt", "training_steps": str(step)})
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    n_params = sum(v.numel() for v in sd.values())
    mask = torch.ones(captions.shape[0], captions.shape[1], dtype=torch.int64)
    save_file({"captions": captions.float().contiguous(), "mask": mask}, os.path.join(args.out, "captions.safetensors"),
              metadata={"class_names": json.dumps(FASHION_CLASSES), "seed": str(dc["caption_seed"])})
    save_file({k: v.contiguous() for k, v in golden(model, config, dc, captions).items()},
              os.path.join(args.out, "golden.safetensors"))

    cfg_out = {
        "model_type": "STDiT3",
        "in_channels": config["in_channels"],
        "patch_size": list(config["patch_size"]),
        "hidden_size": config["hidden_size"],
        "depth": config["depth"],
        "num_heads": config["num_heads"],
        "mlp_ratio": config["mlp_ratio"],
        "caption_channels": config["caption_channels"],
        "model_max_length": config["model_max_length"],
        "input_sq_size": config["input_sq_size"],
        "qk_norm": config["qk_norm"],
        "pred_sigma": config["pred_sigma"],
        "class_dropout_prob": config["class_dropout_prob"],
        "training_steps": step,
        "parameters": n_params,
        "ditfa": {
            "pixel_space": True,
            "video": {"frames": dc["frames"], "height": dc["canvas"], "width": dc["canvas"], "fps": dc["fps"]},
            "sampling": SAMPLING,
            "captions": "captions.safetensors",
            "class_names": FASHION_CLASSES,
            "data": "Moving Fashion-MNIST: one Fashion-MNIST training item (scaled to "
                    f"{dc['item']} px) moving along a straight or bouncing path on a dark {dc['canvas']}x{dc['canvas']} "
                    f"canvas, {dc['frames']} frames, speed up to {dc['max_speed']} px/frame; x/127.5-1 in [-1, 1], 1 channel",
        },
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg_out, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "train_log.jsonl"), "w") as f:
        for r in log:
            f.write(json.dumps(r) + "\n")
    if log:
        plot_loss(log, os.path.join(args.out, "loss_curve.png"))

    scores = None
    if args.eval:
        import shutil

        scores = json.load(open(args.eval + ".json"))
        shutil.copyfile(args.eval + ".json", os.path.join(args.out, "scores.json"))
        clips = np.load(args.eval + ".npy")
        # one clip per class for the pictures
        per = clips[: min(len(clips), 10)]
        from ditfa_tools.data import save_grid_png
        from ditfa_tools.moving_fashion import clips_to_grid

        save_grid_png(clips_to_grid(torch.from_numpy(per)), os.path.join(args.out, "samples.png"), nrow=per.shape[2], scale=2)
        write_animation(clips[: min(len(clips), 20)], os.path.join(args.out, "samples.apng"), columns=10, fps=dc["fps"])
    analysis = None
    if args.analysis:
        import shutil

        analysis = json.load(open(os.path.join(args.analysis, "analysis.json")))
        shutil.copyfile(os.path.join(args.analysis, "redundancy.png"), os.path.join(args.out, "redundancy.png"))
        with open(os.path.join(args.out, "analysis.json"), "w") as f:
            json.dump({k: v for k, v in analysis.items() if k != "per_step"}, f, indent=1)
    write_card(args.out, cfg_out, dc, step, log, targs, scores, args.status, analysis)
    print(f"exported step {step} ({n_params} parameters) to {args.out}")


def write_card(out, cfg, dc, step, log, targs, scores, status, analysis=None) -> None:
    last = log[-50:]
    loss = float(np.mean([r["loss"] for r in last])) if last else float("nan")
    wall = log[-1]["wall_s"] / 3600 if log else 0.0
    lines = [
        "# fashion-stdit3 — a small trained STDiT3 (Open-Sora v1.2 architecture) on Moving Fashion-MNIST",
        "",
        "The video model of `ditfa demo` and the tests: Open-Sora 1.2's STDiT3 with the official formulas and key",
        "names (`tools/ditfa_tools/stdit3_model.py`, checked against the official golden fixture), unchanged, at a",
        f"small size: hidden {cfg['hidden_size']}, {cfg['depth']} spatial + {cfg['depth']} temporal blocks, {cfg['num_heads']} heads, "
        f"patch {tuple(cfg['patch_size'])}, {cfg['parameters'] / 1e6:.2f} M parameters, qk-norm, learned sigma half.",
        "",
        "## Data and conditioning",
        "",
        f"- {cfg['ditfa']['data']}. Generated on the fly (`tools/ditfa_tools/moving_fashion.py`), deterministic per seed.",
        f"- Pixel space (no VAE): the latents are the frames, {dc['frames']}×{dc['canvas']}×{dc['canvas']} → "
        f"{dc['frames']}×{dc['canvas'] // cfg['patch_size'][1]}×{dc['canvas'] // cfg['patch_size'][2]} = "
        f"{dc['frames'] * (dc['canvas'] // cfg['patch_size'][1]) * (dc['canvas'] // cfg['patch_size'][2])} tokens per clip; "
        f"spatial attention over {(dc['canvas'] // cfg['patch_size'][1]) ** 2} tokens per frame, temporal over {dc['frames']} frames.",
        f"- Class conditioning through the cross-attention path: each class has a fixed random \"caption\" of "
        f"{cfg['model_max_length']} tokens × {cfg['caption_channels']} channels (seed {dc['caption_seed']}, `captions.safetensors`), "
        "so the architecture is used unchanged; the learned null caption `y_embedder.y_embedding` is the unconditional half.",
        f"- Micro-conditions: fps {dc['fps']}, height = width = {dc['canvas']}.",
        "",
        "## Training",
        "",
        f"- Rectified flow as Open-Sora 1.2 (`tools/train_stdit3.py`): logit-normal t, x_t = (1 − t)·x0 + t·noise, "
        f"target x0 − noise, caption dropout {cfg['class_dropout_prob']}, {100 * targs.get('cond_prob', 0.1):.0f} % of clips with "
        "clean leading frames (x_mask), AdamW lr {lr}, batch {bs}, EMA {ema}, bf16 autocast, 1 CPU thread.".format(
            lr=targs.get("lr", 3e-4), bs=targs.get("batch_size", 32), ema=targs.get("ema", 0.999)),
        f"- **{step} steps** ({step * targs.get('batch_size', 32):,} clips) in {wall:.1f} h of CPU time; loss (mean of the last "
        f"{10 * len(last)} steps) {loss:.4f}. Log: `train_log.jsonl`; curve: `loss_curve.png`.",
        *([f"- {status}"] if status else []),
        "",
        "## Sampling",
        "",
        f"Rectified flow, {SAMPLING['steps']} Euler steps from t = 1000 to 0, no timestep transform (clips this short map "
        f"every t to 0 under Open-Sora's transform), classifier-free guidance {SAMPLING['guidance']} on the velocity "
        "(batch [cond | null], the sigma half dropped), as `RFLOW.sample`.",
        "",
    ]
    if scores:
        lines += [
            "## Scores",
            "",
            f"{scores['clips']} clips (classes cycling 0..9, seed {scores['seed']}), {scores['steps']} steps, CFG {scores['cfg']}, "
            f"PyTorch {'bf16 autocast' if scores.get('bf16') else 'float32'} (`tools/sample_stdit3.py --score`). Each frame's item "
            "is cropped around its centre and judged by both bundled classifiers (J1 a small CNN, J2 an independent ResNet "
            "trained with generation-like artefacts); Fréchet distance over frame crops against real Moving Fashion-MNIST frames.",
            "",
            f"| judge | per-frame accuracy | Fréchet | per class (%: {', '.join(FASHION_CLASSES)}) |",
            "|---|---|---|---|",
        ]
        for name, sc in scores["judges"].items():
            per = " ".join(f"{100 * a:.0f}" for a in sc["per_class_frame_accuracy"] if a is not None)
            lines.append(f"| {name} | {100 * sc['frame_accuracy']:.1f} % | {sc['frechet']:.2f} | {per} |")
        lines += [
            "",
            "For scale: on real clips J1 reads 77 % of the frames and J2 91 % (the crops are 18 px items scaled back up), "
            "so J1's reading of generated frames has little room below the issue's 75 % goal.",
            "",
            "![samples](samples.png) (one clip per row, frames left to right; `samples.apng` animates 20 clips.)",
            "",
        ]
    if analysis:
        sm = analysis["summary"]
        f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        lines += [
            "## Redundancy per attention site",
            "",
            f"Measured on this model (`tools/analyze_video_attention.py`, step {analysis['step']}): one guided generation of "
            f"{analysis['clips']} clips, {analysis['steps']} steps, CFG {analysis['cfg']}, means over blocks and steps. Step "
            "similarity: the site's attention output (after the out-projection) against the previous step's (what AST reuses); "
            "CFG similarity: conditional against null-caption half (what ASC shares); MRAE is METHOD.md's loss. Spatial locality: "
            f"softmax mass within the 1-D window of {analysis['window']} tokens per side over {analysis['tokens_per_frame']} "
            f"tokens per frame (uniform attention: {analysis['band_area']:.3f}).",
            "",
            "| site | step cos | step MRAE | CFG cos | CFG MRAE | locality |",
            "|---|---|---|---|---|---|",
            *[f"| {site} | {f(v['step_cos'])} | {f(v['step_mrae'])} | {f(v['cfg_cos'])} | {f(v['cfg_mrae'])} | {f(v['locality'])} |"
              for site, v in sm.items()],
            "",
            " ".join(f"{site}: {'consecutive steps agree more than the CFG halves (AST territory)' if (v['step_cos'] or 0) > (v['cfg_cos'] or 0) else 'the CFG halves agree more than consecutive steps (ASC territory)'}."
                     for site, v in sm.items()),
            "",
            "The cross-attention sites are where the class enters: their CFG halves differ most, and guidance multiplies "
            "whatever a plan loses there. Plans that reused their output across steps (AST) lost 7–16 points of per-frame "
            "accuracy for under 10 % of the attention FLOPs, so the planner leaves cross-attention at full by default "
            "(as the paper does) and the shipped plans compress the spatial and temporal sites only.",
            "",
            "![redundancy](redundancy.png)",
            "",
        ]
    lines += [
        "## Files",
        "",
        "`model.safetensors` (EMA weights, official keys, stored as float16), `config.json` (official fields + `ditfa`: pixel space, clip size, "
        "sampling, captions), `captions.safetensors`, `golden.safetensors` (PyTorch forward and a 3-step guided sample of "
        "this model: what `packages/models-opensora` is tested against), `train_log.jsonl`, `loss_curve.png`"
        + (", `scores.json`, `samples.png`, `samples.apng`" if scores else "") + ", `plans/` (D1..D6, `pnpm plans:ship`).",
        "",
        f"Exported with Python {platform.python_version()}, torch {torch.__version__}.",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
