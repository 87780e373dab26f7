"""The image judges on Moving Fashion-MNIST clips: each frame's item, cropped around its centroid and
scaled back to the judges' input (28x28 item padded to 32x32), in NumPy.

The same procedure as `cropItems` / `centroids` in packages/quality/src/video.ts (the TypeScript side
is the product's; this copy writes the `frames` reference statistics and the parity fixture):

- weights: max(x - background - threshold, 0) per pixel (threshold 0.1 in data units); pixel centres
  at integer indices; a frame without weight gets the canvas centre;
- centroid (the track): the weighted mean position;
- item centre (the crop): per axis, the midpoint of the positions where the cumulative weight of the
  marginal (pixel i spread over [i - 1/2, i + 1/2]) reaches `quantile` and 1 - `quantile` of the total
  (0.005): Fashion-MNIST items are centred by their bounding box, not their centroid;
- crop: output pixel (u, v) of the size x size item samples the frame at row
  cy + (u + 0.5 - size/2) * item/size, column cx + (v + 0.5 - size/2) * item/size with bicubic
  interpolation (Keys a = -0.75, as PyTorch; outside the canvas = background; clamped to [-1, 1]), then
  `pad` pixels of background around it. Bicubic, not bilinear: J1 reads blurred items badly (real clips'
  crops 77 % against 71 % bilinear; J2 91 % either way).
"""

from __future__ import annotations

import json

import numpy as np

ITEM, SIZE, PAD, BACKGROUND, THRESHOLD, QUANTILE = 18, 28, 2, -1.0, 0.1, 0.005


def centroids(frames: np.ndarray, background: float = BACKGROUND, threshold: float = THRESHOLD):
    """frames [M, H, W] -> (x [M], y [M], mass [M]) in pixel indices (float64)."""
    f = np.asarray(frames, dtype=np.float64)
    m, h, w = f.shape
    wgt = np.maximum(f - background - threshold, 0.0)
    mass = wgt.sum(axis=(1, 2))
    cols, rows = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    safe = np.where(mass > 0, mass, 1.0)
    x = np.where(mass > 0, (wgt * cols[None, None, :]).sum(axis=(1, 2)) / safe, (w - 1) / 2)
    y = np.where(mass > 0, (wgt * rows[None, :, None]).sum(axis=(1, 2)) / safe, (h - 1) / 2)
    return x, y, mass


def _quantile_middle(marg: np.ndarray, q: float) -> np.ndarray:
    """marg [M, L] non-negative with positive sums -> midpoints of the q and 1 - q positions [M]."""
    cum = np.cumsum(marg, axis=1)
    total = cum[:, -1]

    def at(target):
        i = np.argmax((cum >= target[:, None]) & (marg > 0), axis=1)
        prev = np.where(i > 0, np.take_along_axis(cum, np.maximum(i - 1, 0)[:, None], 1)[:, 0], 0.0)
        mi = np.take_along_axis(marg, i[:, None], 1)[:, 0]
        return i - 0.5 + (target - prev) / mi

    return (at(q * total) + at((1 - q) * total)) / 2


def item_centres(frames: np.ndarray, background: float = BACKGROUND, threshold: float = THRESHOLD,
                 quantile: float = QUANTILE):
    """frames [M, H, W] -> centres of the item boxes (x [M], y [M], mass [M]), as itemCentres in TS."""
    f = np.asarray(frames, dtype=np.float64)
    m, h, w = f.shape
    wgt = np.maximum(f - background - threshold, 0.0)
    cols, rows = wgt.sum(axis=1), wgt.sum(axis=2)
    mass = cols.sum(axis=1)
    ok = mass > 0
    x = np.full(m, (w - 1) / 2)
    y = np.full(m, (h - 1) / 2)
    if ok.any():
        x[ok] = _quantile_middle(cols[ok], quantile)
        y[ok] = _quantile_middle(rows[ok], quantile)
    return x, y, mass


def cubic_weight(d, a: float = -0.75):
    """Keys' cubic convolution kernel (PyTorch's and OpenCV's bicubic), as cubicWeight in TS."""
    x = np.abs(d)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def crop_items(frames: np.ndarray, x=None, y=None, item: int = ITEM, size: int = SIZE, pad: int = PAD,
               background: float = BACKGROUND, threshold: float = THRESHOLD) -> np.ndarray:
    """frames [M, H, W] in [-1, 1] -> crops [M, 1, size + 2 pad, size + 2 pad] float32 (bicubic, clamped)."""
    f = np.asarray(frames, dtype=np.float64)
    m, h, w = f.shape
    if x is None or y is None:
        x, y, _ = item_centres(f, background, threshold)
    b = 2  # a border of background: clipped tap indices land on it
    g = np.full((m, h + 2 * b, w + 2 * b), background)
    g[:, b:-b, b:-b] = f
    off = (np.arange(size, dtype=np.float64) + 0.5 - size / 2) * (item / size)

    def taps(centre):  # [M, size] -> indices into g [M, size, 4], weights [M, size, 4]
        i0 = np.floor(centre)
        fr = centre - i0
        wts = np.stack([cubic_weight(1 + fr), cubic_weight(fr), cubic_weight(1 - fr), cubic_weight(2 - fr)], -1)
        idx = i0.astype(np.int64)[..., None] - 1 + np.arange(4) + b
        return idx, wts

    ry, wy = taps(y[:, None] + off[None, :])
    rx, wx = taps(x[:, None] + off[None, :])
    ry = np.clip(ry, 0, h + 2 * b - 1)
    rx = np.clip(rx, 0, w + 2 * b - 1)
    mi = np.arange(m)[:, None, None, None, None]
    vals = g[mi, ry[:, :, None, :, None], rx[:, None, :, None, :]]  # [M, size, size, 4, 4]
    item_img = np.einsum("muvij,mui,mvj->muv", vals, wy, wx)
    out = np.full((m, 1, size + 2 * pad, size + 2 * pad), background, dtype=np.float32)
    out[:, 0, pad: pad + size, pad: pad + size] = np.clip(item_img, -1, 1).astype(np.float32)
    return out


def run_judge(onnx_path: str, crops: np.ndarray, batch: int = 1000):
    """(logits, features) of an ONNX judge on [M, 1, 32, 32] inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    lo, fe = [], []
    for i in range(0, len(crops), batch):
        a, b = sess.run(["logits", "features"], {name: crops[i: i + batch].astype(np.float32)})
        lo.append(a)
        fe.append(b)
    return np.concatenate(lo), np.concatenate(fe)


def score_clips(clips: np.ndarray, labels: np.ndarray, judges) -> dict:
    """clips [N, 1, T, H, W] (or [N, T, H, W]) in [-1, 1], labels [N]; judges: [(name, onnx, stats)].
    Per-frame accuracy and the Fréchet distance of the frame crops to each judge's `frames` reference
    (else `test`), as scoreClips in packages/quality (which adds the track and PSNR measures)."""
    from safetensors.numpy import load_file

    from .fid import feature_stats, frechet_distance

    c = np.asarray(clips)
    if c.ndim == 5:
        c = c[:, 0]
    n, t, h, w = c.shape
    crops = crop_items(c.reshape(n * t, h, w))
    frame_labels = np.repeat(np.asarray(labels), t)
    out = {}
    for name, onnx_path, stats_path in judges:
        logits, feats = run_judge(onnx_path, crops)
        pred = logits.argmax(1)
        st = load_file(stats_path)
        ref = "frames" if "frames_mu" in st else "test"
        mu, sg = feature_stats(feats)
        out[name] = {
            "frame_accuracy": float((pred == frame_labels).mean()),
            "per_class_frame_accuracy": [float((pred[frame_labels == k] == k).mean()) if (frame_labels == k).any() else None
                                         for k in range(10)],
            "frechet": frechet_distance(mu, sg, st[f"{ref}_mu"], st[f"{ref}_sigma"]),
            "reference": ref,
        }
    return out


def read_info(stats_path: str) -> dict:
    from safetensors import safe_open

    with safe_open(stats_path, "np") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))
