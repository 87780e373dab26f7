"""Train the Fashion-MNIST judge: a small CNN on the DiT's data space, exported to ONNX.

Input: [N, 1, 32, 32] float32 in [-1, 1] (28x28 padded with background to 32x32, see
ditfa_tools/data.py) — exactly what the DiT produces. Outputs: `logits` [N, 10] and `features`
[N, 128] (penultimate layer, after ReLU), used for a Fréchet distance ("FID" in this feature
space; not comparable to Inception FID).

Writes
  models/fashion-classifier.onnx             (opset 17, dynamic batch)
  models/fashion-classifier-stats.safetensors  test_mu [128], test_sigma [128,128] (float64),
                                               train_mu, train_sigma; metadata: accuracy and
                                               reference Fréchet distances (JSON)
  models/fashion-classifier.json             the same numbers, readable

    python tools/train_classifier.py [--epochs 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
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


class FashionCNN(nn.Module):
    def __init__(self, feat_dim: int = 128, num_classes: int = 10):
        super().__init__()

        def cbr(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *cbr(1, 32), nn.MaxPool2d(2),     # 16x16
            *cbr(32, 64), nn.MaxPool2d(2),    # 8x8
            *cbr(64, 128), nn.MaxPool2d(2),   # 4x4
        )
        self.fc = nn.Linear(128 * 16, feat_dim)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        h = self.body(x).flatten(1)
        feats = F.relu(self.fc(h))
        logits = self.head(self.drop(feats))
        return logits, feats


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
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--max-train", type=int, default=0, help="smoke test: use only N train images")
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

    model = FashionCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = len(xtr) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total, pct_start=0.15)
    t0 = time.time()
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch_size: (i + 1) * args.batch_size]
            x, y = xtr[idx].clone(), ytr[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # the DiT is trained with flips too
            x[flip] = x[flip].flip(-1)
            # small random translation (±2 px) for robustness to generated samples
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            logits, _ = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        lo, _ = run_all(model, xte)
        acc = (lo.argmax(1) == yte).float().mean().item()
        print(f"epoch {ep + 1}/{args.epochs} loss {loss.item():.4f} test acc {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    lo_te, f_te = run_all(model, xte)
    lo_tr, f_tr = run_all(model, xtr)
    test_acc = (lo_te.argmax(1) == yte).float().mean().item()
    train_acc = (lo_tr.argmax(1) == ytr).float().mean().item()
    mu_te, sg_te = feature_stats(f_te.numpy())
    mu_tr, sg_tr = feature_stats(f_tr.numpy())
    fd_train_test = frechet_distance(mu_tr, sg_tr, mu_te, sg_te)
    # reference at the sample size the DiT is scored with: 1000 train images, 100 per class
    rng = np.random.default_rng(args.seed)
    pick = np.concatenate([rng.choice(np.where(tr_lab == c)[0], 100, replace=False) for c in range(10)])
    mu_1k, sg_1k = feature_stats(f_tr.numpy()[pick])
    fd_train1k_test = frechet_distance(mu_1k, sg_1k, mu_te, sg_te)
    acc_1k = (lo_tr[pick].argmax(1) == ytr[pick]).float().mean().item()
    info = {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "fd_train60k_vs_test": fd_train_test,
        "fd_train1k_vs_test": fd_train1k_test,
        "train1k_accuracy": acc_1k,
        "feature_dim": int(f_te.shape[1]),
        "epochs": args.epochs,
        "seed": args.seed,
        "preprocessing": "28x28 uint8 padded with 0 to 32x32, x/127.5-1, shape [N,1,32,32]",
        "outputs": ["logits [N,10]", "features [N,128] (penultimate, after ReLU)"],
    }
    print(json.dumps(info, indent=1), flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "fashion-classifier.onnx")
    torch.onnx.export(
        model, (torch.zeros(2, 1, 32, 32),), onnx_path, input_names=["image"],
        output_names=["logits", "features"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    # check the ONNX model against PyTorch
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    o_lo, o_fe = sess.run(None, {"image": xte[:256].numpy()})
    d = max(np.abs(o_lo - lo_te[:256].numpy()).max(), np.abs(o_fe - f_te[:256].numpy()).max())
    print(f"onnx vs torch max abs diff {d:.2e}")
    assert d < 1e-3

    from safetensors.numpy import save_file

    save_file(
        {"test_mu": mu_te, "test_sigma": sg_te, "train_mu": mu_tr, "train_sigma": sg_tr},
        os.path.join(args.out_dir, "fashion-classifier-stats.safetensors"),
        metadata={"info": json.dumps(info)},
    )
    with open(os.path.join(args.out_dir, "fashion-classifier.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
