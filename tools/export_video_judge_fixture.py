"""Writes the fixture @ditfa/quality's clip-judging tests check the TypeScript side against.

20 real Moving Fashion-MNIST clips (the first 2 test images of each class, MovingFashion seed 0,
epoch 0: 8 frames of 32x32, 18 px items), quantised to uint8 like a saved video, with what
ditfa_tools/video_judge.py computes on them: every frame's centroid and item-box centre, and the crop
the judges see (frame 0 of each clip: the item moves by whole pixels, so every frame's crop is the same),
plus the motion (top-left corner per frame).
Run from the repository root: python tools/export_video_judge_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import load_split  # noqa: E402
from ditfa_tools.moving_fashion import MovingFashion  # noqa: E402
from ditfa_tools.video_judge import ITEM, QUANTILE, THRESHOLD, centroids, crop_items, item_centres  # noqa: E402

OUT = 'packages/quality/test/fixtures/moving-fashion-20.safetensors'


def main():
    from safetensors.numpy import save_file

    images, labels = load_split('test')
    ds = MovingFashion(images, labels, seed=0)
    picked = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(10)])
    clips, lab, motion = ds.batch(picked.tolist(), epoch=0)
    u8 = ((clips[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()  # [20, 8, 32, 32]
    n, t, h, w = u8.shape
    frames = u8.reshape(n * t, h, w).astype(np.float64) / 127.5 - 1.0
    cx, cy, _ = centroids(frames)
    bx, by, _ = item_centres(frames)
    crops = crop_items(frames.reshape(n, t, h, w)[:, 0])
    xs, ys = motion.positions(t, ds.L)
    meta = {'source': 'Moving Fashion-MNIST test clips (seed 0, epoch 0) of the first 2 test images per class',
            'item': ITEM, 'threshold': THRESHOLD, 'quantile': QUANTILE, 'canvas': w,
            'velocity': np.stack([motion.vx.numpy(), motion.vy.numpy()], 1).tolist()}
    save_file({'clips': u8, 'labels': lab.numpy().astype(np.int64),
               'centroids': np.stack([cx, cy], 1), 'item_centres': np.stack([bx, by], 1),
               'crops': crops, 'top_left': np.stack([xs.numpy(), ys.numpy()], 2).astype(np.int64)},
              OUT, metadata={'info': json.dumps(meta)})
    print(OUT, os.path.getsize(OUT), 'bytes')


if __name__ == '__main__':
    main()
