"""Reference statistics for judging clips: the judges' features of real Moving Fashion-MNIST frames.

For every bundled judge (J1 `models/fashion-classifier*`, J2 `models/fashion-judge2*`), crops the
item out of real clips exactly as @ditfa/quality's `scoreClips` does (ditfa_tools/video_judge.py),
and adds to the judge's statistics file

  frames_mu [d], frames_sigma [d, d] (float64)   one frame of each of the 10 000 test-split clips
                                                 (MovingFashion seed 0, epoch 0; frame i mod 8)

plus, in the `info` metadata under "frames", what real clips score: the per-frame accuracy of those
crops, and the Fréchet distances of 200 and 1000 train-split clips (all 8 frames, seed 1) to the
reference, the floor a generated set of that size can reach. A real clip's crops are the same in every
frame (the item moves by whole pixels), so one frame per clip loses nothing.

    python tools/judge_frames_reference.py      # after train_classifier.py / train_judge2.py
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import load_split  # noqa: E402
from ditfa_tools.fid import feature_stats, frechet_distance  # noqa: E402
from ditfa_tools.moving_fashion import MovingFashion  # noqa: E402
from ditfa_tools.video_judge import ITEM, QUANTILE, THRESHOLD, crop_items, read_info, run_judge  # noqa: E402
from sample_and_score import judge_files  # noqa: E402


def clip_frames(ds: MovingFashion, indices, every_frame: bool) -> tuple[np.ndarray, np.ndarray]:
    """Frames [M, H, W] and labels [M]: all frames of the clips, or frame i mod T of clip i."""
    frames, labels = [], []
    for s in range(0, len(indices), 500):
        idx = indices[s: s + 500]
        clips, lab, _ = ds.batch(idx, epoch=0)
        c = clips[:, 0].numpy()  # [B, T, H, W]
        if every_frame:
            frames.append(c.reshape(-1, c.shape[-2], c.shape[-1]))
            labels.append(np.repeat(lab.numpy(), c.shape[1]))
        else:
            t = np.asarray(idx) % c.shape[1]
            frames.append(c[np.arange(len(idx)), t])
            labels.append(lab.numpy())
    return np.concatenate(frames), np.concatenate(labels)


def main() -> None:
    from safetensors.numpy import load_file, save_file

    te_img, te_lab = load_split("test")
    tr_img, tr_lab = load_split("train")
    test_ds = MovingFashion(te_img, te_lab, seed=0)
    train_ds = MovingFashion(tr_img, tr_lab, seed=1)
    ref_frames, ref_labels = clip_frames(test_ds, list(range(len(test_ds))), every_frame=False)
    ref_crops = crop_items(ref_frames)
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.where(tr_lab == c)[0], 100, replace=False) for c in range(10)])
    k200 = np.concatenate([pick[c * 100: c * 100 + 20] for c in range(10)])  # 20 clips per class
    f1k, l1k = clip_frames(train_ds, pick.tolist(), every_frame=True)
    f200, l200 = clip_frames(train_ds, k200.tolist(), every_frame=True)
    c1k, c200 = crop_items(f1k), crop_items(f200)
    for name, onnx_path, stats_path in judge_files():
        logits, feats = run_judge(onnx_path, ref_crops)
        mu, sg = feature_stats(feats)
        lo1k, fe1k = run_judge(onnx_path, c1k)
        lo200, fe200 = run_judge(onnx_path, c200)
        frames_info = {
            "source": "Moving Fashion-MNIST test clips (seed 0, epoch 0, 18 px items on 32x32), frame i mod 8 "
                      "of clip i, item cropped around its box centre and resized to 28 + 2 px padding "
                      f"(threshold {THRESHOLD}, quantile {QUANTILE}, item {ITEM})",
            "clips": int(len(ref_crops)),
            "accuracy": float((logits.argmax(1) == ref_labels).mean()),
            "per_class_accuracy": [float((logits.argmax(1)[ref_labels == c] == c).mean()) for c in range(10)],
            "train1k_clips_frame_accuracy": float((lo1k.argmax(1) == l1k).mean()),
            "train200_clips_frame_accuracy": float((lo200.argmax(1) == l200).mean()),
            "fd_train1k_clips_vs_frames": frechet_distance(*feature_stats(fe1k), mu, sg),
            "fd_train200_clips_vs_frames": frechet_distance(*feature_stats(fe200), mu, sg),
            "fd_frames_vs_test": None,
        }
        tensors = load_file(stats_path)
        frames_info["fd_frames_vs_test"] = frechet_distance(mu, sg, tensors["test_mu"], tensors["test_sigma"])
        info = read_info(stats_path)
        info["frames"] = frames_info
        tensors["frames_mu"], tensors["frames_sigma"] = mu, sg
        save_file(tensors, stats_path, metadata={"info": json.dumps(info)})
        json_path = stats_path.replace("-stats.safetensors", ".json")
        if os.path.exists(json_path):
            with open(json_path, "w") as f:
                json.dump(info, f, indent=1)
                f.write("\n")
        print(name, json.dumps({k: v for k, v in frames_info.items() if k != "per_class_accuracy"}), flush=True)


if __name__ == "__main__":
    main()
