"""Load a trained DiT or STDiT3 (EMA weights) from a training checkpoint, an EMA snapshot or an export."""

from __future__ import annotations

import json
import os

import torch

from .dit_model import DiT, FASHION_DIT_CONFIG, build_dit


def load_dit(path: str, use_ema: bool = True) -> tuple[DiT, dict, int]:
    """path: runs/dit/ckpt.pt | runs/dit/ema_XXXXXXX.pt | models/fashion-dit[/weights.safetensors].

    Returns (model in eval mode, config, training step)."""
    if os.path.isdir(path):
        path = os.path.join(path, "weights.safetensors")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        cfg_path = os.path.join(os.path.dirname(path), "config.json")
        config = dict(FASHION_DIT_CONFIG)
        step = -1
        if os.path.exists(cfg_path):
            c = json.load(open(cfg_path))
            config.update({k: c[k] for k in config if k in c})
            step = int(c.get("training_steps", -1))
        sd = load_file(path)
    else:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        config = ck["config"]
        step = int(ck["step"])
        sd = ck["ema"] if use_ema or "model" not in ck else ck["model"]
    model = build_dit(config)
    model.load_state_dict(sd, strict=True)
    return model.eval(), config, step


def load_stdit3(path: str, use_ema: bool = True):
    """path: runs/stdit3/ckpt.pt | runs/stdit3/ema_XXXXXXX.pt (tools/train_stdit3.py).

    Returns (STDiT3 in eval mode, model config, data config, captions [classes, L, C_cap], step)."""
    from .stdit3_model import build_stdit3

    ck = torch.load(path, map_location="cpu", weights_only=False)
    sd = ck["ema"] if use_ema or "model" not in ck else ck["model"]
    model = build_stdit3(ck["config"])
    model.load_state_dict(sd, strict=True)
    return model.eval(), ck["config"], ck["data_config"], ck["captions"], int(ck["step"])
