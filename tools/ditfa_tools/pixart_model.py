"""PixArt-Σ (PixArt-alpha/PixArt-sigma `PixArtMS` without micro-conditions), an exact PyTorch forward
with the official state_dict key names, for the end-to-end benchmark's PyTorch contender and for
checking against the golden fixture `pixart_sigma_d64` (`check_pixart_against_golden`).

    x_embedder.proj                      Conv2d(in, C, k=p, s=p)
    t_embedder.mlp.{0,2}                 Linear(256, C) -> SiLU -> Linear(C, C)   (GLIDE sinusoid, cos first)
    t_block.1                            SiLU -> Linear(C, 6C)                     (adaLN-single)
    y_embedder.y_proj.{fc1,fc2}          caption projection, GELU(tanh)
    blocks.i.scale_shift_table [6, C]    added to t_block(t) per block
    blocks.i.attn.{qkv,proj}             self-attention
    blocks.i.cross_attn.{q_linear,kv_linear,proj}   cross-attention to the captions (text mask)
    blocks.i.mlp.{fc1,fc2}               GELU(tanh)
    final_layer.scale_shift_table [2, C], final_layer.linear   (modulated by the raw t embedding)

Position table: the MAE 2-D sin-cos table with PixArt's base size (`sample_size / patch`) and
interpolation scale, recomputed for the actual grid. LayerNorm eps 1e-6 without affine parameters.
The text mask keeps the keys whose mask is 1 (official: xformers' block-diagonal mask, i.e. the masked
tokens are removed); a row whose mask keeps nothing attends to every token.

Python tooling only; the product is TypeScript.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .dit_model import TimestepEmbedder, modulate


def pixart_pos_embed(channels: int, rows: int, cols: int, base_size: float, interpolation_scale: float) -> np.ndarray:
    """[rows·cols, channels]: first half of the channels from the column coordinate, second half from the row."""
    quarter = channels // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    r = np.arange(rows, dtype=np.float64) / (rows / base_size) / interpolation_scale
    c = np.arange(cols, dtype=np.float64) / (cols / base_size) / interpolation_scale
    rr, cc = np.meshgrid(r, c, indexing="ij")
    rr, cc = rr.reshape(-1, 1) * omega[None], cc.reshape(-1, 1) * omega[None]
    return np.concatenate([np.sin(cc), np.cos(cc), np.sin(rr), np.cos(rr)], axis=1)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        B, N, C = x.shape
        H, D = self.heads, C // self.heads
        q = self.q_linear(x).reshape(B, N, H, D).transpose(1, 2)
        k, v = self.kv_linear(y).reshape(B, -1, 2, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if keep is None else keep[:, None, None, :]  # [B, 1, 1, Lt] bool: True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class PixArtBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.cross_attn = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim)
        self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        B = x.shape[0]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.scale_shift_table[None] + t.reshape(B, 6, -1)).chunk(6, dim=1)
        x = x + gate_msa * self.attn(self.norm1(x) * (1 + scale_msa) + shift_msa)
        x = x + self.cross_attn(x, y, keep)
        x = x + gate_mlp * self.mlp(self.norm2(x) * (1 + scale_mlp) + shift_mlp)
        return x


class PixArtSigma(nn.Module):
    def __init__(
        self,
        sample_size: int = 128,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        caption_channels: int = 4096,
        interpolation_scale: float = 2.0,
        learn_sigma: bool = True,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.hidden_size = hidden_size
        self.base_size = sample_size / patch_size
        self.interpolation_scale = interpolation_scale
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = nn.Module()
        self.y_embedder.y_proj = Mlp(caption_channels, hidden_size, hidden_size)
        self.blocks = nn.ModuleList([PixArtBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = nn.Module()
        self.final_layer.scale_shift_table = nn.Parameter(torch.zeros(2, hidden_size))
        self.final_layer.linear = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, _, H, W = x.shape
        p = self.patch_size
        rows, cols = H // p, W // p
        pos = torch.from_numpy(pixart_pos_embed(self.hidden_size, rows, cols, self.base_size, self.interpolation_scale)).float()
        tokens = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + pos[None]
        t_emb = self.t_embedder(t)
        t_mod = self.t_block(t_emb)
        y = self.y_embedder.y_proj(captions)
        keep = None
        if mask is not None:
            keep = mask.bool()
            keep = torch.where(keep.any(dim=1, keepdim=True), keep, torch.ones_like(keep))
        for block in self.blocks:
            tokens = block(tokens, y, t_mod, keep)
        shift, scale = (self.final_layer.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)
        out = self.final_layer.linear(F.layer_norm(tokens, (self.hidden_size,), eps=1e-6) * (1 + scale) + shift)
        c = self.out_channels
        out = out.reshape(B, rows, cols, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", out).reshape(B, c, rows * p, cols * p)


def build_pixart(config: dict) -> PixArtSigma:
    return PixArtSigma(**config)


def check_pixart_against_golden(folder: str, run: str = "square") -> float:
    """Max relative error (the fixtures' measure) of this module against `pixart_sigma_d64`'s official output."""
    import json
    import os

    from safetensors.torch import load_file

    case = json.load(open(os.path.join(folder, "case.json")))
    cfg = case["primary"]["config"]
    model = PixArtSigma(
        sample_size=cfg["sample_size"],
        patch_size=cfg["patch_size"],
        in_channels=cfg["in_channels"],
        hidden_size=cfg.get("hidden_size", cfg.get("num_attention_heads", 0) * cfg.get("attention_head_dim", 0)),
        depth=cfg.get("depth", cfg.get("num_layers")),
        num_heads=cfg.get("num_heads", cfg.get("num_attention_heads")),
        mlp_ratio=cfg.get("mlp_ratio", 4.0),
        caption_channels=cfg["caption_channels"],
        interpolation_scale=cfg.get("interpolation_scale", cfg.get("pe_interpolation", 1)),
        learn_sigma=cfg.get("learn_sigma", cfg.get("out_channels", 2 * cfg["in_channels"]) == 2 * cfg["in_channels"]),
    ).eval()
    sd = load_file(os.path.join(folder, "weights_official.safetensors"))
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k not in ("pos_embed", "y_embedder.y_embedding")}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    io = load_file(os.path.join(folder, "io.safetensors"))
    with torch.no_grad():
        out = model(io[f"{run}.input.x"], io[f"{run}.input.t"].float(), io[f"{run}.input.y"], io[f"{run}.input.mask"])
    want = io[f"{run}.output.out"]
    return float(((out - want).abs() / want.abs().clamp(min=1)).max())
