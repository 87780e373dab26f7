"""Train the second, independent Fashion-MNIST judge ("J2") and export it to ONNX.

Why a second judge: one classifier can be lenient in ways nobody sees (issue 15). J2 differs from the
first judge (`train_classifier.py`, "J1": 3 conv blocks + max-pooling + a 128-d fully connected
feature layer, AdamW/one-cycle, flips and ±2 px rolls, seed 0) in everything but the data:

- architecture: a small pre-activation ResNet (stem conv 16 → 4 stages of two residual blocks with
  strided convolutions 32@16², 64@8², 96@4², no pooling layers), global average pooling to a **96-d
  feature vector** (after the final BN + ReLU), one linear layer to the 10 logits. 0.48 M parameters.
- recipe: SGD with Nesterov momentum 0.9, peak lr 0.1 (half-epoch linear warm-up, cosine decay to 0),
  weight decay 5e-4 on conv/linear weights only, batch 128, no label smoothing, seed 1, 5 epochs.
- augmentation that resembles generation artefacts (each applied independently per image, after
  flips and a random sub-pixel shift/scale; a quarter of the batch stays clean apart from flips and
  shifts): Gaussian blur, additive white noise and low-frequency ("smooth") noise, contrast and
  gamma changes, blotches (Gaussian blobs of either sign on the item), occlusion patches (cut-out
  rectangles filled with background or a grey level), and quantisation of the intensities to 4-16
  levels (JPEG-like banding). Labels stay the same: the judge should name the class despite such
  artefacts, which is what it is asked about generated samples.

Same interface as J1: input `image` [N, 1, 32, 32] float32 in [-1, 1] (28x28 padded with background
to 32x32, ditfa_tools/data.py), outputs `logits` [N, 10] and `features` [N, 96].

Writes
  models/fashion-judge2.onnx                (opset 17, dynamic batch)
  models/fashion-judge2-stats.safetensors   test_mu [96], test_sigma [96,96] (float64), train_mu,
                                            train_sigma; metadata: accuracy and reference Fréchet
                                            distances (JSON)
  models/fashion-judge2.json                the same numbers, readable
  runs/judge2/model.pt                      the PyTorch weights (git-ignored)

    nice -n 10 python tools/train_judge2.py [--epochs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import load_split, to_model_space  # noqa: E402
from ditfa_tools.fid import feature_stats, frechet_distance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        h = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h)))
        return h + skip


class FashionResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64, 96), num_classes: int = 10):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Conv2d(1, w0, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(
            PreActBlock(w0, w1, 2), PreActBlock(w1, w1, 1),   # 16x16
            PreActBlock(w1, w2, 2), PreActBlock(w2, w2, 1),   # 8x8
            PreActBlock(w2, w3, 2), PreActBlock(w3, w3, 1),   # 4x4
        )
        self.bn = nn.BatchNorm2d(w3)
        self.head = nn.Linear(w3, num_classes)

    def forward(self, x):
        feats = F.relu(self.bn(self.blocks(self.stem(x)))).mean(dim=(2, 3))
        return self.head(feats), feats


# ---------------------------------------------------------------- augmentation (batched, in u = (x+1)/2)

def _gauss_kernels(sigma: torch.Tensor, size: int = 5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - size // 2
    k1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    return (k1[:, :, None] * k1[:, None, :])[:, None]  # [B, 1, size, size]


def augment(x: torch.Tensor, g: torch.Generator, clean_frac: float = 0.25) -> torch.Tensor:
    """x [B, 1, 32, 32] in [-1, 1] -> augmented copy (see the module docstring)."""
    B, _, H, W = x.shape
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    u = (x + 1) / 2
    # flips (the DiT is trained with them too)
    flip = rand(B) < 0.5
    u = torch.where(flip[:, None, None, None], u.flip(-1), u)
    # sub-pixel shift (±2.5 px) and scale (0.88-1.12) for 70 %
    aff = rand(B) < 0.7
    s = torch.where(aff, 0.88 + 0.24 * rand(B), torch.ones(B))
    tx = torch.where(aff, (rand(B) * 2 - 1) * 2.5, torch.zeros(B)) * 2 / W
    ty = torch.where(aff, (rand(B) * 2 - 1) * 2.5, torch.zeros(B)) * 2 / H
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = 1 / s
    theta[:, 1, 1] = 1 / s
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(u.shape), align_corners=False)
    u = F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    art = rand(B) >= clean_frac  # images that get artefacts
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    # blotches: 1-3 Gaussian blobs on the item, either sign
    m = art & (rand(B) < 0.3)
    for _ in range(3):
        on = m & (rand(B) < 0.7)
        cx, cy = 6 + 20 * rand(B), 6 + 20 * rand(B)
        rad = 1.0 + 2.0 * rand(B)
        amp = (rand(B) * 2 - 1) * 0.6 * on
        blob = torch.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / (2 * rad[:, None, None] ** 2))
        u = u + amp[:, None, None, None] * blob[:, None]
    # occlusion patches: a rectangle of background or a grey level
    m = art & (rand(B) < 0.2)
    pw, ph = 3 + (rand(B) * 7).floor(), 3 + (rand(B) * 7).floor()
    px, py = 4 + rand(B) * (24 - pw), 4 + rand(B) * (24 - ph)
    inside = ((xx[None] >= px[:, None, None]) & (xx[None] < (px + pw)[:, None, None])
              & (yy[None] >= py[:, None, None]) & (yy[None] < (py + ph)[:, None, None]))
    fill = torch.where(rand(B) < 0.5, torch.zeros(B), rand(B))
    u = torch.where((inside & m[:, None, None])[:, None], fill[:, None, None, None], u)
    # Gaussian blur, sigma 0.4-1.2
    m = art & (rand(B) < 0.3)
    sig = 0.4 + 0.8 * rand(B)
    blurred = F.conv2d(u.reshape(1, B, H, W), _gauss_kernels(sig), padding=2, groups=B).reshape(B, 1, H, W)
    u = torch.where(m[:, None, None, None], blurred, u)
    # contrast and gamma
    m = art & (rand(B) < 0.4)
    gamma = torch.exp((rand(B) * 2 - 1) * math.log(1.6))
    c = 0.75 + 0.4 * rand(B)
    u = torch.where(m[:, None, None, None], c[:, None, None, None] * u.clamp(0, 1) ** gamma[:, None, None, None], u)
    # additive white noise, and low-frequency noise (bilinear upsampled 8x8)
    m = art & (rand(B) < 0.3)
    u = u + m[:, None, None, None] * (0.02 + 0.08 * rand(B))[:, None, None, None] * torch.randn(u.shape, generator=g)
    m = art & (rand(B) < 0.2)
    low = F.interpolate(torch.randn((B, 1, 8, 8), generator=g), size=(H, W), mode="bilinear", align_corners=False)
    u = u + m[:, None, None, None] * (0.03 + 0.09 * rand(B))[:, None, None, None] * low
    u = u.clamp(0, 1)
    # quantisation to 4-16 levels
    m = art & (rand(B) < 0.2)
    k = (4 + (rand(B) * 13).floor())[:, None, None, None]
    u = torch.where(m[:, None, None, None], torch.round(u * (k - 1)) / (k - 1), u)
    return u * 2 - 1


@torch.no_grad()
def run_all(model, x, bs=500):
    model.eval()
    L, Fs = [], []
    for i in range(0, len(x), bs):
        lo, fe = model(x[i: i + bs])
        L.append(lo)
        Fs.append(fe)
    return torch.cat(L), torch.cat(Fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--ckpt", default=os.path.join(REPO, "runs", "judge2", "model.pt"))
    ap.add_argument("--max-train", type=int, default=0, help="smoke test: use only N train images")
    ap.add_argument("--export-only", action="store_true", help="skip training, export --ckpt")
    ap.add_argument("--augment-png", default="", help="write a grid of augmented training images and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    tr_img, tr_lab = load_split("train")
    te_img, te_lab = load_split("test")
    if args.max_train:
        tr_img, tr_lab = tr_img[: args.max_train], tr_lab[: args.max_train]
    xtr, ytr = to_model_space(tr_img), torch.from_numpy(tr_lab)
    xte, yte = to_model_space(te_img), torch.from_numpy(te_lab)

    if args.augment_png:
        from ditfa_tools.data import save_grid_png

        save_grid_png(torch.cat([xtr[:16], augment(xtr[:112], gen)]), args.augment_png, nrow=16, scale=3)
        return

    model = FashionResNet()
    n_params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = len(xtr) // args.batch_size
    total = steps_per_epoch * args.epochs
    t0 = time.time()
    history = []
    if args.export_only:
        model.load_state_dict(torch.load(args.ckpt, map_location="cpu")["model"])
    else:
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
        opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=args.lr, momentum=0.9, nesterov=True)
        warm = steps_per_epoch // 2

        def lr_at(step: int) -> float:
            if step < warm:
                return args.lr * (step + 1) / warm
            return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        step = 0
        for ep in range(args.epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=gen)
            run_loss = 0.0
            for i in range(steps_per_epoch):
                idx = perm[i * args.batch_size: (i + 1) * args.batch_size]
                x, y = augment(xtr[idx], gen), ytr[idx]
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                logits, _ = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                run_loss += loss.item()
            lo, _ = run_all(model, xte)
            acc = (lo.argmax(1) == yte).float().mean().item()
            history.append({"epoch": ep + 1, "train_loss": run_loss / steps_per_epoch, "test_accuracy": acc,
                            "seconds": round(time.time() - t0, 1)})
            print(f"epoch {ep + 1}/{args.epochs} loss {run_loss / steps_per_epoch:.4f} test acc {acc:.4f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
        os.makedirs(os.path.dirname(args.ckpt), exist_ok=True)
        torch.save({"model": model.state_dict(), "args": vars(args), "history": history}, args.ckpt)

    model.eval()
    lo_te, f_te = run_all(model, xte)
    lo_tr, f_tr = run_all(model, xtr)
    test_acc = (lo_te.argmax(1) == yte).float().mean().item()
    train_acc = (lo_tr.argmax(1) == ytr).float().mean().item()
    # accuracy on artefact-augmented test images (fixed seed): how robust the judge is to the artefacts
    g_eval = torch.Generator().manual_seed(12345)
    lo_aug, _ = run_all(model, augment(xte, g_eval, clean_frac=0.0))
    aug_acc = (lo_aug.argmax(1) == yte).float().mean().item()
    per_class = [float((lo_te.argmax(1)[yte == c] == c).float().mean()) for c in range(10)]
    mu_te, sg_te = feature_stats(f_te.numpy())
    mu_tr, sg_tr = feature_stats(f_tr.numpy())
    fd_train_test = frechet_distance(mu_tr, sg_tr, mu_te, sg_te)
    rng = np.random.default_rng(args.seed)
    pick = np.concatenate([rng.choice(np.where(tr_lab == c)[0], 100, replace=False) for c in range(10)])
    mu_1k, sg_1k = feature_stats(f_tr.numpy()[pick])
    fd_train1k_test = frechet_distance(mu_1k, sg_1k, mu_te, sg_te)
    acc_1k = (lo_tr[pick].argmax(1) == ytr[pick]).float().mean().item()
    info = {
        "name": "J2",
        "architecture": "pre-activation ResNet: stem conv 16, residual stages 32@16x16, 64@8x8, 96@4x4 "
                        "(2 blocks each, strided convs), BN+ReLU, global average pool (features), linear",
        "parameters": n_params,
        "test_accuracy": test_acc,
        "test_accuracy_per_class": per_class,
        "test_accuracy_with_artefacts": aug_acc,
        "train_accuracy": train_acc,
        "fd_train60k_vs_test": fd_train_test,
        "fd_train1k_vs_test": fd_train1k_test,
        "train1k_accuracy": acc_1k,
        "feature_dim": int(f_te.shape[1]),
        "epochs": args.epochs,
        "seed": args.seed,
        "recipe": "SGD Nesterov 0.9, lr 0.1 warm-up 0.5 epoch + cosine, wd 5e-4, batch 128; flips, "
                  "shift/scale, blur, white and low-frequency noise, contrast/gamma, blotches, "
                  "occlusion patches, 4-16 level quantisation",
        "history": history,
        "preprocessing": "28x28 uint8 padded with 0 to 32x32, x/127.5-1, shape [N,1,32,32]",
        "outputs": ["logits [N,10]", "features [N,96] (global average pool after BN+ReLU)"],
    }
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1), flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "fashion-judge2.onnx")
    torch.onnx.export(
        model, (torch.zeros(2, 1, 32, 32),), onnx_path, input_names=["image"],
        output_names=["logits", "features"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    o_lo, o_fe = sess.run(None, {"image": xte[:256].numpy()})
    d = max(np.abs(o_lo - lo_te[:256].numpy()).max(), np.abs(o_fe - f_te[:256].numpy()).max())
    print(f"onnx vs torch max abs diff {d:.2e}; {os.path.getsize(onnx_path) / 1e6:.2f} MB")
    assert d < 1e-3

    from safetensors.numpy import save_file

    save_file(
        {"test_mu": mu_te, "test_sigma": sg_te, "train_mu": mu_tr, "train_sigma": sg_tr},
        os.path.join(args.out_dir, "fashion-judge2-stats.safetensors"),
        metadata={"info": json.dumps(info)},
    )
    with open(os.path.join(args.out_dir, "fashion-judge2.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
