"""Fashion-MNIST loading (Debian package `dataset-fashion-mnist`) and the shared preprocessing.

Preprocessing (the DiT's data space, and the classifier's input space):
28x28 uint8 -> pad 2 pixels of 0 on every side -> 32x32 -> x / 127.5 - 1 in [-1, 1], 1 channel.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import torch

DATA_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split: str, data_dir: str = DATA_DIR):
    """Returns (images uint8 [N, 28, 28], labels int64 [N]); split is 'train' or 'test'."""
    prefix = "train" if split == "train" else "t10k"
    img_path = os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz")
    if not os.path.exists(img_path):
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {img_path}: run `apt-get install -y dataset-fashion-mnist` "
            "or set FASHION_MNIST_DIR"
        )
    images = _read_idx(img_path)
    labels = _read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return images, labels


def to_model_space(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 32, 32] in [-1, 1] (zero padding = -1)."""
    x = np.pad(images_u8, ((0, 0), (2, 2), (2, 2)), mode="constant", constant_values=0)
    x = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] float [N, 1, H, W] -> uint8 [N, H, W] (clamped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu().numpy()


def save_grid_png(x: torch.Tensor, path: str, nrow: int, scale: int = 2) -> None:
    """Write a grid of [-1, 1] images [N, 1, H, W] as a grayscale PNG."""
    from PIL import Image

    imgs = to_uint8(x)
    n, h, w = imgs.shape
    ncol = (n + nrow - 1) // nrow
    pad = 2
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = imgs[i]
    im = Image.fromarray(grid, mode="L")
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
