"""Sample the trained DiT (EMA) with CFG and judge the samples with the ONNX classifier.

Sampler: diffusers-equivalent DDIM (50 steps, leading spacing, eta 0) or DPM-Solver++ 2M
(linspace spacing), classifier-free guidance with the DiT batch order [cond | uncond] on the eps
channel (MODELS.md §4). `--per-class` samples of each of the 10 classes from fixed noise (seeded).

Scores, under every bundled judge (J1 `models/fashion-classifier.onnx`, J2 `models/fashion-judge2.onnx`,
whichever are present; `--classifier/--stats` for one other): classifier accuracy (w.r.t. the requested
class), per-class accuracy, the confusion matrix (rows: requested class, columns: judged class),
per-class Fréchet distances to the class's test images (next to as many real train images of the class),
Fréchet distance of the classifier's penultimate features vs the Fashion-MNIST test set statistics,
next to the references stored with the classifier (train-set vs test-set distances). J1's numbers
stay at the top level of scores.json, every judge's are under "judges". `--rescore DIR` judges a
folder's samples.npy again without sampling.

Writes to --out (default runs/eval/<ckpt-name>_<sampler><steps>_cfg<g>/): scores.json,
grid.png (10 rows = classes, first 10 samples of each), samples.npy (uint8).

    python tools/sample_and_score.py --ckpt runs/dit/ckpt.pt [--sampler ddim|dpmpp2m]
        [--steps 50] [--cfg 4] [--per-class 100] [--threads 2]
    python tools/sample_and_score.py --rescore runs/eval/<folder>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import save_grid_png, to_uint8  # noqa: E402
from ditfa_tools.diffusion import cfg_eps_fn, ddim_sample, dpmpp2m_sample  # noqa: E402
from ditfa_tools.dit_model import FASHION_CLASSES  # noqa: E402
from ditfa_tools.fid import feature_stats, frechet_distance  # noqa: E402
from ditfa_tools.loading import load_dit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(model, config, sampler: str, steps: int, cfg: float, per_class: int, seed: int,
             batch: int, device: str = "cpu", bf16: bool = False, log=print) -> tuple[torch.Tensor, torch.Tensor]:
    nc = config["num_classes"]
    labels = torch.arange(nc).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    size = config["input_size"]
    xT = torch.randn((len(labels), config["in_channels"], size, size), generator=g)
    out = []
    fn = ddim_sample if sampler == "ddim" else dpmpp2m_sample
    t0 = time.time()
    model = model.to(device)
    for i in range(0, len(labels), batch):
        y = labels[i: i + batch].to(device)
        eps_fn = cfg_eps_fn(model, y, cfg, nc, autocast=bf16)
        out.append(fn(eps_fn, xT[i: i + batch].to(device), steps=steps).cpu())
        log(f"  sampled {min(i + batch, len(labels))}/{len(labels)} ({time.time() - t0:.0f}s)")
    return torch.cat(out), labels


def machine() -> dict:
    """CPU model name (as lscpu's "Model name"), core count, torch version: reports carry the machine."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}


def judge_files(models_dir: str = os.path.join(REPO, "models")) -> list[tuple[str, str, str]]:
    """The bundled judges present in `models_dir`: (name, onnx, stats), J1 first."""
    out = []
    for name, stem in (("J1", "fashion-classifier"), ("J2", "fashion-judge2")):
        onnx_path, stats_path = os.path.join(models_dir, f"{stem}.onnx"), os.path.join(models_dir, f"{stem}-stats.safetensors")
        if os.path.exists(onnx_path) and os.path.exists(stats_path):
            out.append((name, onnx_path, stats_path))
    return out


def score(samples: torch.Tensor, labels: torch.Tensor, onnx_path: str, stats_path: str) -> dict:
    import onnxruntime as ort
    from safetensors.numpy import load_file
    from safetensors import safe_open

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    x = samples.clamp(-1, 1).numpy().astype(np.float32)
    # quantise to 8 bit like a saved image, then back to [-1, 1]
    x = np.round((x + 1) * 127.5) / 127.5 - 1.0
    logits, feats = [], []
    for i in range(0, len(x), 500):
        lo, fe = sess.run(None, {"image": x[i: i + 500].astype(np.float32)})
        logits.append(lo)
        feats.append(fe)
    logits, feats = np.concatenate(logits), np.concatenate(feats)
    pred = logits.argmax(1)
    lab = labels.numpy()
    st = load_file(stats_path)
    with safe_open(stats_path, "np") as f:
        ref = json.loads(f.metadata()["info"])
    mu, sg = feature_stats(feats)
    fd = frechet_distance(mu, sg, st["test_mu"], st["test_sigma"])
    confusion = np.zeros((10, 10), dtype=np.int64)  # rows: requested class, columns: judged class
    np.add.at(confusion, (lab, pred), 1)
    per_class_fd, per_class_ref = per_class_frechet(sess, feats, lab)
    return {
        "n": int(len(lab)),
        "accuracy": float((pred == lab).mean()),
        "per_class_accuracy": {FASHION_CLASSES[c]: float((pred[lab == c] == c).mean()) for c in range(10)},
        "frechet_vs_test": fd,
        "confusion": confusion.tolist(),
        "per_class_frechet": per_class_fd,
        "per_class_frechet_real": per_class_ref,
        "classifier": os.path.relpath(onnx_path, REPO),
        "reference": {
            "classifier_test_accuracy": ref["test_accuracy"],
            "frechet_train60k_vs_test": ref["fd_train60k_vs_test"],
            "frechet_train1k_vs_test": ref["fd_train1k_vs_test"],
        },
    }


def per_class_frechet(sess, feats: np.ndarray, lab: np.ndarray) -> tuple[dict, dict]:
    """Per class: Fréchet distance of the samples' features to that class's test images, and of as many
    real train images of the class (seed 0) — the floor at that sample size (a blotched class shows here
    even when the judge still names it correctly)."""
    from ditfa_tools.data import load_split, to_model_space

    te_img, te_lab = load_split("test")
    tr_img, tr_lab = load_split("train")
    name = sess.get_inputs()[0].name
    f_te = np.concatenate([sess.run(["features"], {name: to_model_space(te_img[i: i + 1000]).numpy()})[0]
                           for i in range(0, len(te_img), 1000)])
    rng = np.random.default_rng(0)
    fd, ref = {}, {}
    for c in range(10):
        n = int((lab == c).sum())
        if n < 2:
            continue
        mu, sg = feature_stats(f_te[te_lab == c])
        real = rng.choice(np.where(tr_lab == c)[0], n, replace=False)
        f_real = sess.run(["features"], {name: to_model_space(tr_img[real]).numpy()})[0]
        fd[FASHION_CLASSES[c]] = frechet_distance(*feature_stats(feats[lab == c]), mu, sg)
        ref[FASHION_CLASSES[c]] = frechet_distance(*feature_stats(f_real), mu, sg)
    return fd, ref


def score_all(samples: torch.Tensor, labels: torch.Tensor, judges: list[tuple[str, str, str]]) -> dict:
    """J1's scores at the top level (as before, for export_model.py), every judge's under "judges"."""
    per = {name: score(samples, labels, onnx_path, stats_path) for name, onnx_path, stats_path in judges}
    res = dict(per[judges[0][0]])
    res["judges"] = per
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "dit", "ckpt.pt"))
    ap.add_argument("--sampler", choices=["ddim", "dpmpp2m"], default="ddim")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the model (faster on CPU)")
    ap.add_argument("--classifier", default=None, help="judge with this ONNX classifier only (with --stats)")
    ap.add_argument("--stats", default=None)
    ap.add_argument("--rescore", default=None, help="a folder this script wrote: judge its samples.npy again "
                    "(with every bundled judge) and rewrite its scores.json, without sampling")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.classifier and not args.stats:
        ap.error("--classifier needs --stats (the classifier's reference statistics)")
    judges = [("J1", args.classifier, args.stats)] if args.classifier else judge_files()
    if not judges:
        ap.error("no judge found in models/ (train one with tools/train_classifier.py) and no --classifier")

    if args.rescore:
        with open(os.path.join(args.rescore, "scores.json")) as f:
            old = json.load(f)
        u8 = np.load(os.path.join(args.rescore, "samples.npy"))
        samples = torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0)[:, None]
        labels = torch.arange(10).repeat_interleave(len(u8) // 10)
        res = score_all(samples, labels, judges)
        keep = ("checkpoint", "training_step", "sampler", "steps", "cfg", "seed", "bf16", "sampling_seconds",
                "threads", "device", "machine")
        res.update({k: old[k] for k in keep if k in old})
        print(json.dumps({k: v for k, v in res.items() if k != "judges"}, indent=1), flush=True)
        for name, r in res["judges"].items():
            print(name, f"accuracy {r['accuracy']:.4f}, Fréchet {r['frechet_vs_test']:.3f}", flush=True)
        with open(os.path.join(args.rescore, "scores.json"), "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        return

    model, config, step = load_dit(args.ckpt)
    name = os.path.splitext(os.path.basename(args.ckpt.rstrip("/")))[0]
    out = args.out or os.path.join(
        REPO, "runs", "eval", f"{name}_step{step}_{args.sampler}{args.steps}_cfg{args.cfg:g}_n{args.per_class * 10}"
    )
    os.makedirs(out, exist_ok=True)
    print(f"checkpoint {args.ckpt} (step {step}) -> {out}", flush=True)
    t0 = time.time()
    samples, labels = generate(model, config, args.sampler, args.steps, args.cfg, args.per_class, args.seed,
                               args.batch, args.device, args.bf16, log=lambda s: print(s, flush=True))
    secs = time.time() - t0
    np.save(os.path.join(out, "samples.npy"), to_uint8(samples))
    res = score_all(samples, labels, judges)
    res.update({"checkpoint": args.ckpt, "training_step": step, "sampler": args.sampler, "steps": args.steps,
                "cfg": args.cfg, "seed": args.seed, "bf16": args.bf16, "sampling_seconds": round(secs, 1),
                "threads": args.threads, "device": args.device, "machine": machine()})
    print(json.dumps(res, indent=1), flush=True)
    with open(os.path.join(out, "scores.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    nshow = min(10, args.per_class)
    idx = torch.cat([torch.arange(c * args.per_class, c * args.per_class + nshow) for c in range(10)])
    save_grid_png(samples[idx], os.path.join(out, "grid.png"), nrow=nshow, scale=2)


if __name__ == "__main__":
    main()
