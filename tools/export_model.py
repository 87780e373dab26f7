"""Export the trained DiT (EMA weights) to models/fashion-dit/ for the TypeScript side.

Writes
  weights.safetensors   EMA state_dict, float32, the original DiT key names (incl. pos_embed)
  config.json           architecture + class names + training state
  golden.safetensors    fixed inputs and the PyTorch outputs (float32, no autocast):
                          input.x [4,1,32,32], input.t [4] = [0,17,500,999], input.y [4] = [3,7,10,0]
                          (10 = null class) -> output.out [4,2,32,32]; inter.t_freq, inter.c,
                          inter.x_tokens, inter.block.{0,last}.out, inter.final_tokens;
                          cfg.input.{x,t,y,cfg_scale} (x = cat([z, z]), y = [2,9,10,10],
                          t = [250,750,250,750], scale 4) -> cfg.output.out (guidance on the eps
                          channel only, the project's convention), cfg.output.out_upstream3
                          (upstream's hard-coded [:3]: with 2 channels that guides eps AND v),
                          cfg.output.raw_forward;
                          sample.{xT [2,1,32,32], y [2] = [1,7], cfg_scale} -> sample.ddim10.final and
                          sample.dpmpp2m10.final (10-step samplers, CFG 4, [cond | uncond]).
  train_log.jsonl       the training log up to the exported step (from the checkpoint)
  loss_curve.png        loss / mse / vb against step
  README.md             the model card (with scores/grid/analysis if --eval/--analysis are given)

    python tools/export_model.py --ckpt runs/dit/ckpt.pt --eval runs/eval/<dir> --analysis runs/analysis
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.diffusion import cfg_eps_fn, ddim_sample, dpmpp2m_sample  # noqa: E402
from ditfa_tools.dit_model import FASHION_CLASSES  # noqa: E402
from ditfa_tools.loading import load_dit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@torch.no_grad()
def make_golden(model, config) -> dict:
    C, S, nc = config["in_channels"], config["input_size"], config["num_classes"]
    g = torch.Generator().manual_seed(1234)
    x = torch.randn((4, C, S, S), generator=g)
    t = torch.tensor([0, 17, 500, 999], dtype=torch.long)
    y = torch.tensor([3, 7, nc, 0], dtype=torch.long)
    d = {"input.x": x, "input.t": t, "input.y": y}
    d["output.out"] = model(x, t, y)
    d["inter.t_freq"] = model.t_embedder.timestep_embedding(t, 256)
    c = model.t_embedder(t) + model.y_embedder(y)
    d["inter.c"] = c
    h = model.x_embedder(x) + model.pos_embed
    d["inter.x_tokens"] = h
    for i, blk in enumerate(model.blocks):
        h = blk(h, c)
        if i in (0, len(model.blocks) - 1):
            d[f"inter.block.{i}.out"] = h
    d["inter.final_tokens"] = model.final_layer(h, c)
    z = torch.randn((2, C, S, S), generator=g)
    cx = torch.cat([z, z])
    ct = torch.tensor([250, 750, 250, 750], dtype=torch.long)
    cy = torch.tensor([2, 9, nc, nc], dtype=torch.long)
    d["cfg.input.x"], d["cfg.input.t"], d["cfg.input.y"] = cx, ct, cy
    d["cfg.input.cfg_scale"] = torch.tensor([4.0])
    d["cfg.output.out"] = model.forward_with_cfg(cx, ct, cy, 4.0)
    d["cfg.output.out_upstream3"] = model.forward_with_cfg(cx, ct, cy, 4.0, guided_channels=3)
    d["cfg.output.raw_forward"] = model(cx, ct, cy)
    xT = torch.randn((2, C, S, S), generator=g)
    sy = torch.tensor([1, 7], dtype=torch.long)
    d["sample.xT"], d["sample.y"], d["sample.cfg_scale"] = xT, sy, torch.tensor([4.0])
    fn = cfg_eps_fn(model, sy, 4.0, nc)
    d["sample.ddim10.final"] = ddim_sample(fn, xT, 10)
    d["sample.dpmpp2m10.final"] = dpmpp2m_sample(fn, xT, 10)
    return {k: v.contiguous() for k, v in d.items()}


def plot_loss(log: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in log])
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))

    def smooth(v, k=20):
        v = np.asarray(v, dtype=np.float64)
        if len(v) < k:
            return v
        return np.convolve(v, np.ones(k) / k, mode="valid")

    for key in ["loss", "mse"]:
        v = smooth([r[key] for r in log])
        ax[0].plot(steps[len(steps) - len(v):], v, label=key)
    v = smooth([r["vb"] for r in log])
    ax[1].plot(steps[len(steps) - len(v):], v, label="vb", color="C2")
    ax[0].set_yscale("log")
    ax[1].set_yscale("log")
    for a in ax:
        a.set_xlabel("step (batch 64)")
        a.legend()
        a.grid(alpha=0.3)
    ax[0].set_title("training loss (moving average of 10-step means)")
    ax[1].set_title("VLB term (bits/dim)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "dit", "ckpt.pt"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "fashion-dit"))
    ap.add_argument("--eval", default=None, help="a sample_and_score.py output folder")
    ap.add_argument("--analysis", default=None, help="an analyze_attention.py output folder")
    ap.add_argument("--status", default="", help="a sentence on the training state for the model card")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)

    model, config, step = load_dit(args.ckpt)
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    log = ck.get("log", [])
    targs = ck.get("args", {})

    from safetensors.torch import save_file

    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.out, "weights.safetensors"), metadata={"format": "pt", "training_steps": str(step)})
    n_params = sum(v.numel() for k, v in sd.items() if k != "pos_embed")
    cfg_out = {
        "model_type": "dit",
        "in_channels": config["in_channels"],
        "input_size": config["input_size"],
        "patch_size": config["patch_size"],
        "hidden_size": config["hidden_size"],
        "depth": config["depth"],
        "num_heads": config["num_heads"],
        "mlp_ratio": config["mlp_ratio"],
        "num_classes": config["num_classes"],
        "null_class": config["num_classes"],
        "class_dropout_prob": config["class_dropout_prob"],
        "learn_sigma": config["learn_sigma"],
        "out_channels": config["in_channels"] * (2 if config["learn_sigma"] else 1),
        "class_names": FASHION_CLASSES,
        "training_steps": step,
        "batch_size": targs.get("batch_size"),
        "parameters": n_params,
        "data_space": "Fashion-MNIST 28x28 padded with background to 32x32, x/127.5-1 in [-1,1], 1 channel; "
                      "no VAE: the model works in pixel space",
        "diffusion": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4,
                      "beta_end": 0.02, "prediction_type": "epsilon", "variance": "learned_range"},
        "cfg": {"batch_order": "[cond | uncond]", "guided_channels": "eps (channel 0)", "default_scale": 4.0},
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg_out, f, indent=1)
        f.write("\n")
    save_file(make_golden(model, config), os.path.join(args.out, "golden.safetensors"),
              metadata={"model": "fashion-dit", "training_steps": str(step), "dtype": "float32, no autocast"})
    with open(os.path.join(args.out, "train_log.jsonl"), "w") as f:
        for r in log:
            f.write(json.dumps(r) + "\n")
    if log:
        plot_loss(log, os.path.join(args.out, "loss_curve.png"))

    scores = None
    if args.eval:
        scores = json.load(open(os.path.join(args.eval, "scores.json")))
        shutil.copy(os.path.join(args.eval, "grid.png"), os.path.join(args.out, "samples.png"))
        with open(os.path.join(args.out, "scores.json"), "w") as f:
            json.dump(scores, f, indent=1)
            f.write("\n")
    analysis = None
    if args.analysis:
        analysis = json.load(open(os.path.join(args.analysis, "analysis.json")))["summary"]
        for name in ["attention_maps.png", "redundancy.png"]:
            shutil.copy(os.path.join(args.analysis, name), os.path.join(args.out, name))
        with open(os.path.join(args.out, "analysis.json"), "w") as f:
            json.dump(analysis, f, indent=1)
            f.write("\n")
    write_card(args.out, cfg_out, step, log, targs, scores, analysis, args.status)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(os.path.join(REPO, "models")) for fn in fns)
    print(f"exported step {step} to {args.out}; models/ is {total / 1e6:.1f} MB")


JUDGE_FILES = {"J1": "models/fashion-classifier.onnx", "J2": "models/fashion-judge2.onnx"}


def score_lines(scores: dict) -> list[str]:
    """The model card's scores: every judge in scores["judges"] (sample_and_score.py), else J1 alone."""
    judges = scores.get("judges") or {"J1": scores}
    names = list(judges)
    where = f" on {scores['machine']['cpu']}" if scores.get("machine") else ""
    L = [f"Raw model samples, {scores['sampler']} {scores['steps']} steps, CFG {scores['cfg']} "
         f"([cond | uncond], guidance on eps), {scores['n']} samples ({scores['n'] // 10} per class, seed "
         f"{scores['seed']}{', bf16 autocast' if scores.get('bf16') else ', float32'}){where}, at step "
         f"{scores['training_step']}, judged by " + " and ".join(f"{k} (`{JUDGE_FILES.get(k, judges[k].get('classifier', '?'))}`)" for k in names) + ":\n"]
    cols = " | ".join(names)
    L.append(f"| metric | {cols} | reference ({' / '.join(names)}) |\n|---|{'---|' * len(names)}---|\n"
             f"| classifier accuracy | " + " | ".join(f"**{judges[k]['accuracy'] * 100:.1f} %**" for k in names)
             + " | test set " + " / ".join(f"{judges[k]['reference']['classifier_test_accuracy'] * 100:.1f} %" for k in names) + " |\n"
             f"| Fréchet distance (the judge's features) vs test set | " + " | ".join(f"**{judges[k]['frechet_vs_test']:.3f}**" for k in names)
             + " | 1000 train images " + " / ".join(f"{judges[k]['reference']['frechet_train1k_vs_test']:.3f}" for k in names) + " |\n")
    fd = all("per_class_frechet" in judges[k] for k in names)
    head = [f"accuracy {k}" for k in names] + ([f"Fréchet {k} (real)" for k in names] if fd else [])
    L.append(f"| class | {' | '.join(head)} |\n|---|{'---|' * len(head)}")
    for c in judges[names[0]]["per_class_accuracy"]:
        cells = [f"{judges[k]['per_class_accuracy'][c] * 100:.1f} %" for k in names]
        if fd:
            cells += [f"{judges[k]['per_class_frechet'][c]:.2f} ({judges[k]['per_class_frechet_real'][c]:.2f})" for k in names]
        L.append(f"| {c} | " + " | ".join(cells) + " |")
    if fd:
        L.append("\nFréchet per class: the samples of a class against that class's real test images, in brackets as "
                 "many real train images of the class (the floor at that sample size).")
    L.append("")
    if len(names) > 1 and all("confusion" in judges[k] for k in names):
        L.append("Most frequent confusions (requested → judged, count of " + str(scores["n"]) + "): " + "; ".join(
            f"{k}: " + ", ".join(f"{FASHION_CLASSES[a]} → {FASHION_CLASSES[b]} {n}" for n, a, b in top_confusions(judges[k]["confusion"]))
            for k in names) + "\n")
    return L


def top_confusions(confusion, k: int = 4):
    cells = [(n, a, b) for a, row in enumerate(confusion) for b, n in enumerate(row) if a != b and n > 0]
    return sorted(cells, key=lambda x: -x[0])[:k]


def _f(v, nd=3):
    return "n/a" if v is None else f"{v:.{nd}f}"



def lr_history(log: list, targs: dict) -> str:
    """The learning rate after warm-up as the log saw it: '3e-4' or '3e-4 until step 740, 8e-4 from step 750 (...)'
    when a resumed run changed it."""
    warm = int(targs.get("warmup") or 0)
    spans: list = []  # [lr, first step, last step]
    for r in log:
        if r["step"] <= warm or "lr" not in r:
            continue
        if spans and abs(spans[-1][0] - r["lr"]) <= 1e-12:
            spans[-1][2] = r["step"]
        else:
            spans.append([r["lr"], r["step"], r["step"]])
    if len(spans) <= 1:
        return f"{spans[0][0] if spans else targs.get('lr')}"
    parts = [f"{lr:g} until step {b}" for lr, _a, b in spans[:-1]]
    parts.append(f"{spans[-1][0]:g} from step {spans[-1][1]} (changed at a resume)")
    return ", ".join(parts)

def write_card(out, cfg, step, log, targs, scores, analysis, status) -> None:
    last = log[-50:] if log else []
    loss = np.mean([r["loss"] for r in last]) if last else None
    mse = np.mean([r["mse"] for r in last]) if last else None
    vb = np.mean([r["vb"] for r in last]) if last else None
    sps = np.median([r["samples_per_s"] for r in log[-200:]]) if log else None
    wall = log[-1]["wall_s"] if log else None
    L = []
    L.append("# fashion-dit — a small class-conditional DiT trained on Fashion-MNIST\n")
    L.append("The model bundled with ditfa for end-to-end tests of attention compression on a real, trained "
             "diffusion transformer. Produced by `tools/` (see `tools/README.md`); nothing here was downloaded.\n")
    L.append("## Training state\n")
    L.append(f"- **{step} training steps** of batch {cfg['batch_size']} ({step * (cfg['batch_size'] or 0) / 60000:.1f} epochs), "
             f"{_f(wall / 3600 if wall else None, 2)} h wall-clock (including pauses), median {_f(sps, 1)} samples/s "
             f"({log[-1]['device'] if log else '?'}, bf16 autocast, threads "
             f"{'/'.join(str(v) for v in sorted({r.get('threads', 0) for r in log}))}).")
    L.append(f"- Loss over the last {len(last) * 10} steps: total {_f(loss, 4)}, eps-MSE {_f(mse, 4)}, VLB {_f(vb, 4)} bits/dim.")
    if status:
        L.append(f"- {status}")
    L.append("")
    L.append("## Architecture (exactly facebookresearch/DiT `models.py`)\n")
    L.append(f"| item | value |\n|---|---|\n"
             f"| input | {cfg['in_channels']}×{cfg['input_size']}×{cfg['input_size']} pixels (no VAE) |\n"
             f"| patch | {cfg['patch_size']} → {(cfg['input_size'] // cfg['patch_size']) ** 2} tokens |\n"
             f"| hidden / depth / heads | {cfg['hidden_size']} / {cfg['depth']} / {cfg['num_heads']} "
             f"(head dim {cfg['hidden_size'] // cfg['num_heads']}) |\n"
             f"| MLP | ratio {cfg['mlp_ratio']}, GELU(tanh) |\n"
             f"| classes | {cfg['num_classes']} + null class {cfg['null_class']} |\n"
             f"| output | {cfg['out_channels']} channels: eps, variance value v (learned range) |\n"
             f"| parameters | {cfg['parameters']:,} (+ fixed pos_embed) |\n")
    L.append("Everything else as upstream: fixed 2-D sin-cos `pos_embed` (first half of the channels = column), "
             "timestep features [cos, sin] with f_k = exp(-ln(10000) k/128) on 256 frequencies, adaLN-Zero, "
             "LayerNorm eps 1e-6 without affine, unpatchify order (ky, kx, c). Key names are the original ones "
             "(`x_embedder.proj`, `t_embedder.mlp.{0,2}`, `y_embedder.embedding_table`, `blocks.i.{attn.qkv, attn.proj, "
             "mlp.fc1, mlp.fc2, adaLN_modulation.1}`, `final_layer.{linear, adaLN_modulation.1}`, `pos_embed`). "
             "The PyTorch module is verified against the official-DiT golden fixture "
             "(`python tools/check_against_golden.py`).\n")
    L.append("## Data and training\n")
    L.append("- Fashion-MNIST train set (60 000 images; Debian package `dataset-fashion-mnist`), 28×28 padded with "
             "background (0) to 32×32, scaled to [-1, 1]; random horizontal flips.")
    L.append("- Diffusion: 1000 steps, linear betas 1e-4…0.02, eps prediction, learned-range variance. Loss = DiT's "
             "hybrid loss: eps MSE + VLB term (the VLB sees the eps prediction detached, so it trains only the "
             "variance channel), uniform t.")
    L.append(f"- Class dropout 0.1 to the null class; AdamW lr {lr_history(log, targs)} (linear warm-up {targs.get('warmup')} "
             f"steps, no decay, no weight decay), grad-norm clip {targs.get('grad_clip')}; EMA {targs.get('ema')} "
             f"(with warm-up min(decay, (1+n)/(10+n))); seed {targs.get('seed')}. The exported weights are the EMA.")
    L.append("- Loss curve (`train_log.jsonl` is the full log):\n\n![loss curve](loss_curve.png)\n")
    L.append("## Samples and scores\n")
    if scores:
        L.extend(score_lines(scores))
        L.append("Rows are classes 0–9 (" + ", ".join(FASHION_CLASSES) + "):\n\n![samples](samples.png)\n")
    else:
        L.append("Not scored yet.\n")
    L.append("## Attention redundancy (what DiTFastAttn exploits)\n")
    if analysis:
        m = analysis["mean"]
        L.append(f"Measured by `tools/analyze_attention.py` at step {analysis['training_step']}: {analysis['sampler']} "
                 f"{analysis['steps']} steps, CFG {analysis['cfg']}, {analysis['n']} samples (seed {analysis['seed']}), "
                 f"{analysis['tokens']} tokens, window band |q−k| ≤ {analysis['window_per_side']} (L/8 per side; a uniform "
                 f"attention puts {analysis['band_area'] * 100:.1f} % of its mass there).\n")
        L.append("| block | attention mass in band | cos(step, step−1) | rel. L2 step change | cos(cond, uncond) | rel. L2 cond vs uncond |\n|---|---|---|---|---|---|")
        for b, v in analysis["per_block"].items():
            L.append(f"| {b} | {v['locality'] * 100:.1f} % | {_f(v['temporal_cos'], 4)} | {_f(v['temporal_rel'], 4)} | "
                     f"{_f(v['cfg_cos'], 4)} | {_f(v['cfg_rel'], 4)} |")
        L.append(f"| mean | {m['locality'] * 100:.1f} % | {_f(m['temporal_cos'], 4)} | {_f(m['temporal_rel'], 4)} | "
                 f"{_f(m['cfg_cos'], 4)} | {_f(m['cfg_rel'], 4)} |\n")
        L.append("By phase of sampling (rel. L2): " + "; ".join(
            f"{ph.replace('_', ' ')}: locality {v['locality'] * 100:.1f} %, step change {_f(v['temporal_rel'], 3)}, "
            f"cond/uncond {_f(v['cfg_rel'], 3)}" for ph, v in analysis["by_phase"].items()) + "\n")
        L.append("Attention outputs are taken after the out-projection and before the adaLN gate (what AST caches). "
                 "`analysis.json` has the averages; the per-step rows are reproducible with the script.\n")
        L.append("![attention maps](attention_maps.png)\n\n![redundancy](redundancy.png)\n")
    else:
        L.append("Not measured yet.\n")
    L.append("## Files\n")
    L.append("- `weights.safetensors` — EMA weights, float32, original DiT key names.\n"
             "- `config.json` — architecture, class names, training state.\n"
             "- `golden.safetensors` — fixed inputs and PyTorch outputs for the TypeScript loader: plain forward "
             "(B=4 incl. the null class, t = 0, 17, 500, 999), intermediates, a CFG forward (scale 4, [cond | uncond], "
             "guidance on the eps channel; `cfg.output.out_upstream3` is upstream's [:3] variant), and 10-step DDIM / "
             "DPM-Solver++ 2M samples with CFG 4. Float32, no autocast; check with atol = rtol = 1e-4 "
             "(samplers: relative to max(|x|, 1)).\n"
             "- `train_log.jsonl`, `loss_curve.png`, `samples.png`, `scores.json`, `attention_maps.png`, "
             "`redundancy.png`, `analysis.json`.\n")
    L.append("## Reproduce / continue\n")
    L.append("See `tools/README.md`: `nohup nice -n 19 python tools/train_dit.py --resume auto > runs/dit/train.out 2>&1 &` "
             "continues from `runs/dit/ckpt.pt` or `/work/ditfa-train/ckpt.pt`, then `tools/sample_and_score.py`, "
             "`tools/analyze_attention.py` and `tools/export_model.py`.\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main()
