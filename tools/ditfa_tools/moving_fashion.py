"""Moving Fashion-MNIST: short pixel-space clips of one Fashion-MNIST item moving over a dark canvas.

A clip is T frames (default 8) of a `canvas` x `canvas` canvas (default 32) filled with -1 (black,
the data space of data.py: x/127.5 - 1 in [-1, 1], 1 channel). One training image, resized with
antialiasing to `item` x `item` pixels (default 18) and optionally mirrored, starts at an integer
top-left position (x0, y0) in [0, L], L = canvas - item, and moves with a constant integer velocity
(vx, vy), |vx|, |vy| <= max_speed (default 3 px/frame), not both 0. The path is straight and bounces
off the canvas edges (mirror reflection of the position into [0, L]), so every frame is determined
by the item, the first frame and the velocity: the motion is predictable from two frames, and
generating a consistent clip needs information across frames (temporal attention).

Deterministic: the motion, mirror flag and item of clip `index` in `epoch` come from a
torch.Generator seeded by (seed, epoch, index) only, independent of batching and thread count.

Class conditioning: a fixed "caption" per class, `class_captions()` = deterministic random
embeddings [num_classes, length, channels] (seed 20240601 by default), stored with the model; the
product feeds them to the caption path exactly like T5 features (all `length` tokens valid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CAPTION_SEED = 20240601


def resize_items(images_u8: np.ndarray, item: int) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, item, item] in [-1, 1] (bilinear with antialias; 28 = no resize)."""
    x = torch.from_numpy(images_u8.astype(np.float32)).unsqueeze(1) / 127.5 - 1.0
    if item != x.shape[-1]:
        x = F.interpolate(x, size=(item, item), mode="bilinear", antialias=True, align_corners=False)
    return x[:, 0].clamp(-1, 1).contiguous()


def bounce(p: torch.Tensor, L: int) -> torch.Tensor:
    """Reflect integer positions into [0, L] (triangle wave with period 2L)."""
    if L == 0:
        return torch.zeros_like(p)
    m = torch.remainder(p, 2 * L)
    return torch.where(m <= L, m, 2 * L - m)


@dataclass
class Motion:
    """Per-clip parameters (all [B] int64 tensors)."""

    x0: torch.Tensor
    y0: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    flip: torch.Tensor

    def positions(self, frames: int, L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left (x, y) per frame, each [B, frames]."""
        t = torch.arange(frames)
        xs = bounce(self.x0[:, None] + self.vx[:, None] * t[None], L)
        ys = bounce(self.y0[:, None] + self.vy[:, None] * t[None], L)
        return xs, ys


def random_motion(gen: torch.Generator, L: int, max_speed: int = 3) -> tuple[int, int, int, int, int]:
    """(x0, y0, vx, vy, flip) for one clip from `gen`; the velocity is never (0, 0)."""
    x0, y0 = (int(v) for v in torch.randint(0, L + 1, (2,), generator=gen))
    n = 2 * max_speed + 1
    k = int(torch.randint(0, n * n - 1, (1,), generator=gen))  # all (vx, vy) pairs except (0, 0)
    k = k + 1 if k >= (n * n) // 2 else k
    vx, vy = k % n - max_speed, k // n - max_speed
    flip = int(torch.randint(0, 2, (1,), generator=gen))
    return x0, y0, vx, vy, flip


def render(items: torch.Tensor, motion: Motion, frames: int, canvas: int) -> torch.Tensor:
    """items [B, s, s] in [-1, 1] -> clips [B, 1, frames, canvas, canvas] (background -1)."""
    B, s, _ = items.shape
    L = canvas - s
    items = torch.where(motion.flip[:, None, None].bool(), items.flip(-1), items)
    xs, ys = motion.positions(frames, L)
    out = torch.full((B, 1, frames, canvas, canvas), -1.0)
    for b in range(B):
        for t in range(frames):
            y, x = int(ys[b, t]), int(xs[b, t])
            out[b, 0, t, y: y + s, x: x + s] = items[b]
    return out


class MovingFashion:
    """Clips from a Fashion-MNIST split; `batch(indices, epoch)` -> (x [B,1,T,H,W], labels [B], Motion)."""

    def __init__(self, images_u8: np.ndarray, labels: np.ndarray, canvas: int = 32, item: int = 18,
                 frames: int = 8, max_speed: int = 3, seed: int = 0):
        assert item <= canvas
        self.items = resize_items(images_u8, item)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.canvas, self.item, self.frames, self.max_speed, self.seed = canvas, item, frames, max_speed, seed
        self.L = canvas - item

    def __len__(self) -> int:
        return len(self.labels)

    def motion_for(self, indices, epoch: int) -> Motion:
        rows = []
        for i in indices:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + int(i))
            rows.append(random_motion(g, self.L, self.max_speed))
        a = torch.tensor(rows, dtype=torch.int64).reshape(-1, 5)
        return Motion(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])

    def batch(self, indices, epoch: int = 0):
        idx = torch.as_tensor(indices, dtype=torch.int64)
        motion = self.motion_for(idx.tolist(), epoch)
        return render(self.items[idx], motion, self.frames, self.canvas), self.labels[idx], motion


def class_captions(num_classes: int = 10, length: int = 4, channels: int = 64, seed: int = CAPTION_SEED) -> torch.Tensor:
    """Fixed per-class caption embeddings [num_classes, length, channels] ~ N(0, 1), from `seed`."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_classes, length, channels, generator=g)


def clips_to_grid(clips: torch.Tensor) -> torch.Tensor:
    """[N, 1, T, H, W] -> images [N*T, 1, H, W] in row-major order (row = clip, column = frame)."""
    N, C, T, H, W = clips.shape
    return clips.permute(0, 2, 1, 3, 4).reshape(N * T, C, H, W)
