"""Open-Sora v1.2 STDiT3, a faithful re-implementation of hpcaitech/Open-Sora tag v1.2.0
(commit 17cce90, `opensora/models/stdit/stdit3.py` + `opensora/models/layers/blocks.py`) in plain
PyTorch: no opensora, timm, xformers, einops or rotary-embedding-torch imports.

Formulas and state_dict key names are the official ones (/work/shared/docs/MODELS.md §3.3 and
docs/keys/models_keys_opensora_stdit123.txt), so a state_dict of this module loads into the
official `STDiT3` and vice versa; checked against the golden fixture `opensora_stdit3_d64` by
tools/check_against_golden.py:

    x_embedder.proj.{weight,bias}            Conv3d(in, C, k=patch, s=patch); zero-pads T, H, W at the end
    t_embedder.mlp.{0,2}                     [cos, sin] sinusoid (256, /half) -> Linear -> SiLU -> Linear
    fps_embedder.mlp.{0,2}                   SizeEmbedder: the same sinusoid of the fps value -> MLP
    t_block.1                                Linear(C, 6C) after SiLU, on t = t_emb + fps_emb; shared by all blocks
    y_embedder.y_proj.{fc1,fc2}              caption projection caption_channels -> C -> C, GELU(tanh)
    y_embedder.y_embedding                   [model_max_length, caption_channels] learned null caption (buffer)
    rope.freqs                               [head_dim/2] 10000^(-2j/hd), frozen (rotary-embedding-torch)
    spatial_blocks.i / temporal_blocks.i     identical STDiT3Blocks, run spatial i then temporal i:
        scale_shift_table [6, C]             + t_mlp -> shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
        attn.qkv, attn.q_norm, attn.k_norm,  self-attention over S tokens of a frame (spatial) or over T frames of a
        attn.proj                            position (temporal); LlamaRMSNorm(head_dim) on q, k; the temporal one
                                             then applies interleaved-pair RoPE over the frame index (norm BEFORE
                                             rope in v1.2; v1.1 had rope first)
        cross_attn.{q_linear,kv_linear,proj} cross-attention of every video token of sample b to the VALID caption
                                             tokens of sample b only (the official packs them into one sequence and
                                             uses xformers' block-diagonal mask); added without norm or gate
        mlp.{fc1,fc2}                        GELU(tanh), ratio 4
    final_layer.{scale_shift_table [2,C], linear}   T2IFinalLayer on the raw t (t_emb + fps_emb), shift first

Position embedding: dynamic 2-D sin-cos (`PositionEmbedding2D`) added to every frame, with
`scale = sqrt(height[0]*width[0]) / input_sq_size` (pixel sizes) and `base_size = round(sqrt(S))`:
coordinate of row i = i/scale*base_size/Hp, column j = j/scale*base_size/Wp; channels
[E(column), E(row)], E(p) = [sin(p w_k), cos(p w_k)], w_k = 10000^(-2k/(C/2)).

x_mask [B, T] (bool): frames marked False take the modulation computed from t = 0 (Open-Sora's
image/video conditioning). Reproduced including the official final-layer quirk: T2IFinalLayer
modulates first and builds the t = 0 branch from the ALREADY modulated x, so False frames get
norm(norm(x)(1+scale)+shift)(1+scale0)+shift0 (inside the blocks both branches modulate norm(x)).

Output: [B, 2*C_in, T, H, W] (pred_sigma): channels 0..C_in-1 are the rectified-flow velocity
(x0 - noise); the sigma half is unused by RFLOW (no loss, dropped by the sampler). Padding for
odd latent sizes is cropped off.

Differences from the official module, none of which changes a forward result:
- caption dropout for CFG is not drawn inside forward (`force_drop_ids` replaces a sample's
  caption by `y_embedding`, as the official `token_drop`); the training script draws the drops
  with its own seeded generator so that training is deterministic;
- attention uses `F.scaled_dot_product_attention` (the official non-flash path computes
  softmax(q*scale @ k^T) in float32; `explicit_softmax=True` does exactly that, and recording
  intermediates also uses it);
- `initialize_weights` (training from scratch only) is Open-Sora v1.2's (xavier Linear, fps_embedder
  mlp.2 zero, temporal blocks' attn.proj / cross_attn.proj / mlp.fc2 zero) plus the PixArt-family
  from-scratch init that v1.2 inherited through its PixArt-Sigma initial weights and that STDiT v1.0/v1.1
  still do in code (patch embed as Linear, t_embedder / t_block / y_proj N(0, 0.02), cross_attn.proj and
  final linear zero).

Python tooling only; the product is TypeScript.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# recording of intermediates (golden check, analysis); no effect when off
# --------------------------------------------------------------------------------------------


class _Recordable(nn.Module):
    """Modules that can store named intermediates into a dict set by `STDiT3.record(...)`."""

    _rec: Optional[dict] = None
    _rec_prefix: str = ""
    _rec_only: Optional[set] = None

    def _save(self, name: str, value: torch.Tensor) -> None:
        if self._rec is not None and (self._rec_only is None or name in self._rec_only):
            key = self._rec_prefix + name
            if key in self._rec:  # second call within one forward (e.g. the t = 0 branch)
                key = key + ".call1"
            self._rec[key] = value.detach().float().clone()


# --------------------------------------------------------------------------------------------
# small layers
# --------------------------------------------------------------------------------------------


class LlamaRMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) in float32, cast back, times weight (official LlamaRMSNorm)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """rotary-embedding-torch `RotaryEmbedding(dim=head_dim)` as Open-Sora uses it (`rotate_queries_or_keys`).

    freqs_j = 1 / 10000^(2j/dim) (a frozen parameter `freqs`, in the checkpoint); position p of the
    sequence axis (-2) gets the angles [p f_0, p f_0, p f_1, p f_1, ...] (interleaved pairs) and
    out[2j] = x[2j] cos - x[2j+1] sin, out[2j+1] = x[2j+1] cos + x[2j] sin.
    """

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    @staticmethod
    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (-1, 2))
        x1, x2 = x.unbind(-1)
        return torch.stack((-x2, x1), dim=-1).flatten(-2)

    def rotate_queries_or_keys(self, t: torch.Tensor) -> torch.Tensor:
        seq_len = t.shape[-2]
        pos = torch.arange(seq_len, device=t.device, dtype=self.freqs.dtype)
        angles = torch.einsum("i,f->if", pos, self.freqs).repeat_interleave(2, dim=-1)  # [T, dim]
        rot = angles.shape[-1]
        t_rot, t_rest = t[..., :rot], t[..., rot:]
        out = t_rot * angles.cos() + self.rotate_half(t_rot) * angles.sin()
        return torch.cat((out, t_rest), dim=-1).to(t.dtype)


def t2i_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _t_mask_select(x_mask: torch.Tensor, x: torch.Tensor, masked_x: torch.Tensor, T: int, S: int) -> torch.Tensor:
    """Per frame: x where x_mask [B, T] is True, masked_x where it is False; x is [B, T*S, C]."""
    B, N, C = x.shape
    out = torch.where(x_mask[:, :, None, None], x.view(B, T, S, C), masked_x.view(B, T, S, C))
    return out.reshape(B, N, C)


class Mlp(nn.Module):
    """timm `Mlp` (fc1, act, fc2), the names Open-Sora's checkpoints use."""

    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


# --------------------------------------------------------------------------------------------
# embedders
# --------------------------------------------------------------------------------------------


class PatchEmbed3D(nn.Module):
    """Conv3d patch embedding; zero-pads W, H, T at the end to multiples of the patch; -> [B, N, C], (t, h, w)."""

    def __init__(self, patch_size: Sequence[int], in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, D, H, W = x.shape
        pt, ph, pw = self.patch_size
        if W % pw:
            x = F.pad(x, (0, pw - W % pw))
        if H % ph:
            x = F.pad(x, (0, 0, 0, ph - H % ph))
        if D % pt:
            x = F.pad(x, (0, 0, 0, 0, 0, pt - D % pt))
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        """GLIDE-style: [cos(t f_k), sin(t f_k)], f_k = exp(-ln(max_period) k / half); t may be fractional."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs.to(t.device)[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size).to(dtype))


class SizeEmbedder(TimestepEmbedder):
    """Scalar micro-condition (v1.2: fps) -> the timestep sinusoid -> MLP; [B] or [B, d] -> [B, d*C]."""

    def forward(self, s: torch.Tensor, bs: int) -> torch.Tensor:  # type: ignore[override]
        if s.ndim == 1:
            s = s[:, None]
        if s.shape[0] != bs:
            s = s.repeat(bs // s.shape[0], 1)
        b, dims = s.shape
        s_freq = self.timestep_embedding(s.reshape(-1), self.frequency_embedding_size)
        s_freq = s_freq.to(self.mlp[0].weight.dtype)
        return self.mlp(s_freq).reshape(b, -1)


class CaptionEmbedder(nn.Module):
    """Caption projection `y_proj` and the learned null caption `y_embedding` (a persistent buffer)."""

    def __init__(self, in_channels: int, hidden_size: int, uncond_prob: float, token_num: int):
        super().__init__()
        self.y_proj = Mlp(in_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(token_num, in_channels) / in_channels**0.5)
        self.uncond_prob = uncond_prob

    def forward(self, caption: torch.Tensor, force_drop_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """caption [B, 1, L, C_cap]; rows with force_drop_ids == 1 are replaced by the null caption."""
        if force_drop_ids is not None:
            drop = (force_drop_ids == 1).to(caption.device)
            caption = torch.where(drop[:, None, None, None], self.y_embedding.to(caption.dtype), caption)
        return self.y_proj(caption)


class PositionEmbedding2D(nn.Module):
    """Dynamic 2-D sin-cos table [1, Hp*Wp, C] (official float32 formula; `inv_freq` is not persistent)."""

    def __init__(self, dim: int):
        super().__init__()
        assert dim % 4 == 0, "dim must be divisible by 4"
        self.dim = dim
        half_dim = dim // 2
        inv_freq = 1.0 / (10000 ** (torch.arange(0, half_dim, 2).float() / half_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: dict = {}

    def _sin_cos(self, t: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("i,d->id", t, self.inv_freq)
        return torch.cat((torch.sin(out), torch.cos(out)), dim=-1)

    def forward(self, x: torch.Tensor, h: int, w: int, scale: float = 1.0, base_size: Optional[int] = None) -> torch.Tensor:
        key = (x.device, x.dtype, h, w, float(scale), base_size)
        if key not in self._cache:
            grid_h = torch.arange(h, device=x.device) / scale
            grid_w = torch.arange(w, device=x.device) / scale
            if base_size is not None:
                grid_h *= base_size / h
                grid_w *= base_size / w
            # token n = i*w + j; the first half of the channels encodes the COLUMN j, the second the ROW i
            col = grid_w[None, :].expand(h, w).reshape(-1)
            row = grid_h[:, None].expand(h, w).reshape(-1)
            emb = torch.cat([self._sin_cos(col), self._sin_cos(row)], dim=-1)
            self._cache[key] = emb.unsqueeze(0).to(x.dtype)
        return self._cache[key]


# --------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------


class Attention(_Recordable):
    """Self-attention with fused qkv (rows q | k | v), optional LlamaRMSNorm qk-norm and RoPE (norm first)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False,
                 rope: Optional[RotaryEmbedding] = None):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = LlamaRMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = LlamaRMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        # held outside the module tree (as the official passes a bound method): `rope.freqs` stays top-level
        self._rope = [rope] if rope is not None else []
        self.explicit_softmax = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        self._save("in", x)
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, H, N, hd]
        self._save("q", q)
        self._save("k", k)
        self._save("v", v)
        q, k = self.q_norm(q), self.k_norm(k)
        self._save("q_normed", q)
        self._save("k_normed", k)
        if self._rope:
            q = self._rope[0].rotate_queries_or_keys(q)
            k = self._rope[0].rotate_queries_or_keys(k)
            self._save("q_rope", q)
            self._save("k_rope", k)
        if self.explicit_softmax or self._rec is not None:
            dtype = q.dtype
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = attn.to(torch.float32).softmax(dim=-1).to(dtype)
            x = attn @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v.to(q.dtype))
        x = x.transpose(1, 2).reshape(B, N, C)
        self._save("core", x)
        x = self.proj(x)
        self._save("out", x)
        return x


class MultiHeadCrossAttention(_Recordable):
    """Video tokens of sample b attend to sample b's valid caption tokens only.

    `cond` is the packed [1, M, C] sequence of all samples' valid tokens (M = sum(y_lens)), as the
    official builds it; the official xformers `BlockDiagonalMask.from_seqlens([N]*B, y_lens)` is
    computed here by unpacking k, v to [B, max(y_lens)] with a key-padding mask (none when all
    lengths are equal). Scale head_dim^-0.5.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        assert d_model % num_heads == 0
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.q_linear = nn.Linear(d_model, d_model)
        self.kv_linear = nn.Linear(d_model, d_model * 2)
        self.proj = nn.Linear(d_model, d_model)
        self.explicit_softmax = False

    def forward(self, x: torch.Tensor, cond: torch.Tensor, y_lens: Sequence[int]) -> torch.Tensor:
        B, N, C = x.shape
        H, hd = self.num_heads, self.head_dim
        self._save("in", x)
        self._save("cond_packed", cond)
        q = self.q_linear(x)
        self._save("q_lin", q)
        kv = self.kv_linear(cond)
        self._save("kv_lin", kv)
        kv = kv.view(-1, 2, H, hd)  # [M, 2, H, hd]
        lens = [int(n) for n in y_lens]
        assert len(lens) == B and sum(lens) == kv.shape[0], (lens, B, kv.shape)
        assert min(lens) > 0, "every sample needs at least one valid caption token"
        L = max(lens)
        if all(n == L for n in lens):
            kv_b = kv.view(B, L, 2, H, hd)
            attn_mask = None
        else:
            kv_b = kv.new_zeros(B, L, 2, H, hd)
            valid = torch.zeros(B, L, dtype=torch.bool, device=x.device)
            off = 0
            for b, n in enumerate(lens):
                kv_b[b, :n] = kv[off: off + n]
                valid[b, :n] = True
                off += n
            attn_mask = valid[:, None, None, :]  # [B, 1, 1, L]
        k = kv_b[:, :, 0].transpose(1, 2)  # [B, H, L, hd]
        v = kv_b[:, :, 1].transpose(1, 2)
        q = q.view(B, N, H, hd).transpose(1, 2)  # [B, H, N, hd]
        if self.explicit_softmax or self._rec is not None:
            attn = (q * hd**-0.5) @ k.transpose(-2, -1)
            if attn_mask is not None:
                attn = attn.masked_fill(~attn_mask, float("-inf"))
            out = attn.to(torch.float32).softmax(dim=-1).to(q.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(B, N, C)
        self._save("core", out)
        out = self.proj(out)
        self._save("out", out)
        return out


# --------------------------------------------------------------------------------------------
# blocks and final layer
# --------------------------------------------------------------------------------------------


class STDiT3Block(_Recordable):
    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0,
                 rope: Optional[RotaryEmbedding] = None, qk_norm: bool = False, temporal: bool = False):
        super().__init__()
        self.temporal = temporal
        self.hidden_size = hidden_size
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True, qk_norm=qk_norm, rope=rope)
        self.cross_attn = MultiHeadCrossAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, y_lens: Sequence[int],
                x_mask: Optional[torch.Tensor] = None, t0: Optional[torch.Tensor] = None,
                T: int = 1, S: int = 1) -> torch.Tensor:
        B, N, C = x.shape
        self._save("in", x)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + t.reshape(B, 6, -1)
        ).chunk(6, dim=1)
        if x_mask is not None:
            # frames with x_mask False use the t = 0 parameters. The official modulates with both sets and
            # selects per frame afterwards; selecting the parameters per frame first ([B, T, 1, C]) gives
            # bit-identical results (the same elementwise ops on the same values) for less work.
            zero = (self.scale_shift_table[None] + t0.reshape(B, 6, -1)).chunk(6, dim=1)
            keep = x_mask[:, :, None, None]
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
                torch.where(keep, a[:, None], a0[:, None])
                for a, a0 in zip((shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), zero)
            )
            frames = (B, T, S, C)
        else:
            frames = (B, N, C)

        # self-attention (spatial: over S within each frame; temporal: over T at each position)
        x_m = t2i_modulate(self.norm1(x).view(frames), shift_msa, scale_msa)
        if self.temporal:
            x_m = x_m.reshape(B, T, S, C).transpose(1, 2).reshape(B * S, T, C)
            x_m = self.attn(x_m)
            x_m = x_m.view(B, S, T, C).transpose(1, 2)  # [B, T, S, C]
        else:
            x_m = self.attn(x_m.reshape(B * T, S, C)).view(B, T, S, C)
        x = x + (gate_msa * x_m.reshape(frames)).reshape(B, N, C)

        # cross-attention (no norm, no gate)
        x = x + self.cross_attn(x, y, y_lens)

        # MLP
        x_m = t2i_modulate(self.norm2(x).view(frames), shift_mlp, scale_mlp).reshape(B, N, C)
        self._save("mlp_in", x_m)
        x_m = self.mlp(x_m)
        self._save("mlp_out", x_m)
        x = x + (gate_mlp * x_m.view(frames)).reshape(B, N, C)
        self._save("out", x)
        return x


class T2IFinalLayer(nn.Module):
    """PixArt final layer on the raw t; with x_mask it keeps the official order (see module docstring)."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, num_patch * out_channels, bias=True)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, t: torch.Tensor, x_mask: Optional[torch.Tensor] = None,
                t0: Optional[torch.Tensor] = None, T: int = 1, S: int = 1) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        x = t2i_modulate(self.norm_final(x), shift, scale)
        if x_mask is not None:
            shift0, scale0 = (self.scale_shift_table[None] + t0[:, None]).chunk(2, dim=1)
            x_zero = t2i_modulate(self.norm_final(x), shift0, scale0)  # official: from the modulated x
            x = _t_mask_select(x_mask, x, x_zero, T, S)
        return self.linear(x)


# --------------------------------------------------------------------------------------------
# STDiT3
# --------------------------------------------------------------------------------------------


class STDiT3(_Recordable):
    def __init__(
        self,
        input_sq_size: int = 512,
        in_channels: int = 4,
        patch_size: Sequence[int] = (1, 2, 2),
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        pred_sigma: bool = True,
        caption_channels: int = 4096,
        model_max_length: int = 300,
        qk_norm: bool = True,
        **unused,
    ):
        super().__init__()
        for k, v in unused.items():  # accept the official config's switches that do not change the math
            if k in ("drop_path",) and v not in (0, 0.0):
                raise ValueError(f"{k}={v} is not supported (only 0)")
        self.pred_sigma = pred_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if pred_sigma else in_channels
        self.depth = depth
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.patch_size = tuple(patch_size)
        self.input_sq_size = input_sq_size

        self.pos_embed = PositionEmbedding2D(hidden_size)
        self.rope = RotaryEmbedding(dim=hidden_size // num_heads)
        self.x_embedder = PatchEmbed3D(self.patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.fps_embedder = SizeEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))
        self.y_embedder = CaptionEmbedder(caption_channels, hidden_size, class_dropout_prob, model_max_length)
        self.spatial_blocks = nn.ModuleList(
            [STDiT3Block(hidden_size, num_heads, mlp_ratio, qk_norm=qk_norm) for _ in range(depth)]
        )
        self.temporal_blocks = nn.ModuleList(
            [STDiT3Block(hidden_size, num_heads, mlp_ratio, rope=self.rope, qk_norm=qk_norm, temporal=True)
             for _ in range(depth)]
        )
        self.final_layer = T2IFinalLayer(hidden_size, math.prod(self.patch_size), self.out_channels)
        self.initialize_weights()

    # ---- init (training from scratch) ----
    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        # Open-Sora v1.2
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.constant_(self.fps_embedder.mlp[0].bias, 0)
        nn.init.constant_(self.fps_embedder.mlp[2].weight, 0)
        nn.init.constant_(self.fps_embedder.mlp[2].bias, 0)
        for block in self.temporal_blocks:
            nn.init.constant_(block.attn.proj.weight, 0)
            nn.init.constant_(block.cross_attn.proj.weight, 0)
            nn.init.constant_(block.mlp.fc2.weight, 0)
        # PixArt family (v1.2 started from PixArt-Sigma weights; STDiT v1.0/v1.1 init this way in code)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.normal_(self.t_block[1].weight, std=0.02)
        nn.init.normal_(self.y_embedder.y_proj.fc1.weight, std=0.02)
        nn.init.normal_(self.y_embedder.y_proj.fc2.weight, std=0.02)
        for block in list(self.spatial_blocks) + list(self.temporal_blocks):
            nn.init.constant_(block.cross_attn.proj.weight, 0)
            nn.init.constant_(block.cross_attn.proj.bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    # ---- helpers ----
    def get_dynamic_size(self, x: torch.Tensor) -> tuple[int, int, int]:
        _, _, T, H, W = x.shape
        pt, ph, pw = self.patch_size
        return -(-T // pt), -(-H // ph), -(-W // pw)

    def encode_text(self, y: torch.Tensor, mask: Optional[torch.Tensor] = None,
                    force_drop_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list]:
        """y [B, 1, L, C_cap] (+ mask [B, L] or [B/k, L]) -> packed valid tokens [1, M, C] and y_lens."""
        y = self.y_embedder(y, force_drop_ids)  # [B, 1, L, C]
        self._save("y_emb", y)
        if mask is not None:
            if mask.shape[0] != y.shape[0]:
                mask = mask.repeat(y.shape[0] // mask.shape[0], 1)
            mask = mask.squeeze(1).squeeze(1)
            y = y.squeeze(1).masked_select(mask.unsqueeze(-1) != 0).view(1, -1, self.hidden_size)
            y_lens = mask.sum(dim=1).tolist()
        else:
            y_lens = [y.shape[2]] * y.shape[0]
            y = y.squeeze(1).reshape(1, -1, self.hidden_size)
        return y, y_lens

    def unpatchify(self, x: torch.Tensor, N_t: int, N_h: int, N_w: int, R_t: int, R_h: int, R_w: int) -> torch.Tensor:
        """[B, N, (T_p H_p W_p C_out)] -> [B, C_out, T, H, W], padding cropped."""
        B = x.shape[0]
        T_p, H_p, W_p = self.patch_size
        C = self.out_channels
        x = x.reshape(B, N_t, N_h, N_w, T_p, H_p, W_p, C)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(B, C, N_t * T_p, N_h * H_p, N_w * W_p)
        return x[:, :, :R_t, :R_h, :R_w]

    @staticmethod
    def _first(v) -> float:
        return float(v[0].item()) if torch.is_tensor(v) else float(v if not isinstance(v, (list, tuple)) else v[0])

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        y: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        x_mask: Optional[torch.Tensor] = None,
        fps: Optional[torch.Tensor] = None,
        height: Optional[torch.Tensor] = None,
        width: Optional[torch.Tensor] = None,
        force_drop_ids: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """x [B, C_in, T, H, W]; timestep [B] (rectified-flow time in [0, 1000]); y [B, 1, L, C_cap];
        mask [B, L] (1 = valid caption token); x_mask [B, T] bool; fps, height, width [B] (pixel sizes)."""
        dtype = self.x_embedder.proj.weight.dtype
        B = x.shape[0]
        x = x.to(dtype)
        timestep = timestep.to(dtype)
        y = y.to(dtype)
        if x_mask is not None:
            x_mask = x_mask.bool()

        # position embedding
        _, _, Tx, Hx, Wx = x.shape
        T, H, W = self.get_dynamic_size(x)
        S = H * W
        base_size = round(S**0.5)
        scale = (self._first(height) * self._first(width)) ** 0.5 / self.input_sq_size
        pos_emb = self.pos_embed(x, H, W, scale=scale, base_size=base_size)
        self._save("pos_emb", pos_emb)

        # timestep (+ fps) embedding
        self._save("t_freq", TimestepEmbedder.timestep_embedding(timestep, self.t_embedder.frequency_embedding_size))
        t = self.t_embedder(timestep, dtype=x.dtype)
        self._save("t_emb", t)
        if not torch.is_tensor(fps):
            fps = torch.full((B,), float(fps), device=x.device)
        fps_emb = self.fps_embedder(fps.to(x.device).unsqueeze(1), B)
        self._save("fps_emb", fps_emb)
        t = t + fps_emb
        t_mlp = self.t_block(t)
        self._save("t_mlp", t_mlp)
        t0 = t0_mlp = None
        if x_mask is not None:
            t0_timestep = torch.zeros_like(timestep)
            self._save("t_freq", TimestepEmbedder.timestep_embedding(t0_timestep, self.t_embedder.frequency_embedding_size))
            t0 = self.t_embedder(t0_timestep, dtype=x.dtype)
            self._save("t_emb", t0)
            t0 = t0 + fps_emb
            t0_mlp = self.t_block(t0)
            self._save("t_mlp", t0_mlp)

        # caption
        y, y_lens = self.encode_text(y, mask, force_drop_ids)

        # video tokens
        x = self.x_embedder(x)  # [B, T*S, C]
        self._save("x_patch", x)
        x = (x.view(B, T, S, -1) + pos_emb.unsqueeze(1)).reshape(B, T * S, -1)

        for spatial_block, temporal_block in zip(self.spatial_blocks, self.temporal_blocks):
            x = spatial_block(x, y, t_mlp, y_lens, x_mask, t0_mlp, T, S)
            x = temporal_block(x, y, t_mlp, y_lens, x_mask, t0_mlp, T, S)

        x = self.final_layer(x, t, x_mask, t0, T, S)
        self._save("final_tokens", x)
        x = self.unpatchify(x, T, H, W, Tx, Hx, Wx)
        return x.to(torch.float32)

    def set_explicit_softmax(self, flag: bool) -> None:
        """True: attention as matmul + float32 softmax (the official non-flash path; on CPU much faster than
        SDPA's flash kernel for the many short temporal sequences); False: F.scaled_dot_product_attention."""
        for m in self.modules():
            if isinstance(m, (Attention, MultiHeadCrossAttention)):
                m.explicit_softmax = flag

    # ---- recording ----
    def record(self, rec: Optional[dict], prefix: str = "inter.", all_blocks: bool = False) -> None:
        """Store intermediates under the golden fixture's names into `rec` (None switches recording off).

        Top level: pos_emb, t_freq, t_emb, fps_emb, t_mlp (+ `.call1` = the t = 0 versions with x_mask),
        y_emb, x_patch, final_tokens; every block: `{spatial,temporal}_block.i.out`; block 0 of each kind
        (every block with all_blocks) also: in, attn.{in,q,k,v,q_normed,k_normed,[q_rope,k_rope],core,out},
        cross_attn.{in,cond_packed,q_lin,kv_lin,core,out}, mlp_in, mlp_out. Recording uses the explicit
        float32 softmax of the official non-flash path.
        """
        for m in self.modules():
            if isinstance(m, _Recordable):
                m._rec, m._rec_prefix, m._rec_only = None, "", None
        if rec is None:
            return
        self._rec, self._rec_prefix = rec, prefix
        for kind, blocks in (("spatial_block", self.spatial_blocks), ("temporal_block", self.temporal_blocks)):
            for i, blk in enumerate(blocks):
                p = f"{prefix}{kind}.{i}."
                blk._rec, blk._rec_prefix = rec, p
                if i == 0 or all_blocks:
                    blk.attn._rec, blk.attn._rec_prefix = rec, p + "attn."
                    blk.cross_attn._rec, blk.cross_attn._rec_prefix = rec, p + "cross_attn."
                else:
                    blk._rec_only = {"out"}


# --------------------------------------------------------------------------------------------
# configuration of the project's small video model (see tools/README.md, "The video model")
# --------------------------------------------------------------------------------------------

STDIT3_CONFIG_KEYS = [
    "input_sq_size", "in_channels", "patch_size", "hidden_size", "depth", "num_heads", "mlp_ratio",
    "class_dropout_prob", "pred_sigma", "caption_channels", "model_max_length", "qk_norm",
]


def build_stdit3(config: dict) -> STDiT3:
    return STDiT3(**{k: config[k] for k in STDIT3_CONFIG_KEYS if k in config})
