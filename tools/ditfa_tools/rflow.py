"""Rectified flow exactly as Open-Sora 1.2 (`opensora/schedulers/rf`, tag v1.2.0, commit 17cce90).

Convention (MODELS.md §4.6; verified against the official `RFlowScheduler` / `RFLOW.sample`):

- time t in [0, 1000]; t = 0 is data, t = 1000 is noise;
- forward process `add_noise`: x_t = (1 - t/1000) * x0 + (t/1000) * noise;
- the model predicts the velocity v = x0 - noise (first C channels of its output; Open-Sora's
  sigma half gets no loss), loss = mean over C, T, H, W of (v_pred - (x0 - noise))^2;
- training times: `uniform` t = U[0,1)*1000 or `logit-normal` t = sigmoid(N(loc, scale))*1000
  (torch's LogisticNormal with a 1-d base, first component; Open-Sora 1.2 trains with
  logit-normal, loc 0, scale 1), optionally followed by `timestep_transform`;
- sampling (mask-free path of `RFLOW.sample`): t_i = (1 - i/N)*1000, optionally transformed;
  per step z_in = [z, z], y = [caption, null], v = v_uncond + cfg*(v_cond - v_uncond),
  z = z + v*dt with dt = (t_i - t_{i+1})/1000 and dt = t_{N-1}/1000 at the last step.

`rflow_sample` reproduces the fixture /work/shared/fixtures/golden/samplers_rflow (checked by
tools/check_against_golden.py).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch


def timestep_transform(t: torch.Tensor, height: torch.Tensor, width: torch.Tensor, num_frames: torch.Tensor,
                       num_timesteps: int = 1000, base_resolution: float = 512 * 512,
                       base_num_frames: float = 1, scale: float = 1.0) -> torch.Tensor:
    """Open-Sora's resolution/length-dependent time shift (float32, per sample).

    ratio = sqrt(H*W / 512^2) * sqrt(nf), nf = 1 for images else num_frames // 17 * 5 (VAE frames);
    t' = ratio*s / (1 + (ratio - 1)*s) * 1000 with s = t/1000. NB: for clips shorter than 17 frames
    nf = 0 and every t' = 0, so the transform is unusable for short pixel-space clips.
    """
    t = t / num_timesteps
    ratio_space = ((height * width) / base_resolution).sqrt()
    if num_frames[0] == 1:
        nf = torch.ones_like(num_frames)
    else:
        nf = num_frames // 17 * 5
    ratio_time = (nf / base_num_frames).sqrt()
    ratio = ratio_space * ratio_time * scale
    new_t = ratio * t / (1 + (ratio - 1) * t)
    return new_t * num_timesteps


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, num_timesteps: int = 1000) -> torch.Tensor:
    """x_t = (1 - t/1000) x0 + (t/1000) noise, t [B] broadcast over the other axes."""
    tp = 1 - t.float() / num_timesteps
    tp = tp.view(-1, *([1] * (x0.dim() - 1)))
    return tp * x0 + (1 - tp) * noise


def sample_t(n: int, generator: torch.Generator, method: str = "logit-normal", loc: float = 0.0,
             scale: float = 1.0, num_timesteps: int = 1000) -> torch.Tensor:
    """Training times in [0, num_timesteps) (float32), drawn from `generator`."""
    if method == "uniform":
        return torch.rand(n, generator=generator) * num_timesteps
    if method == "logit-normal":
        z = loc + scale * torch.randn(n, generator=generator)
        return torch.sigmoid(z) * num_timesteps
    raise ValueError(f"Expected sample method 'uniform' or 'logit-normal' but received {method!r}")


def rflow_loss(velocity_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE between the predicted velocity and x0 - noise ([B])."""
    return (velocity_pred - (x0 - noise)).pow(2).flatten(1).mean(1)


def rflow_timesteps(num_steps: int, batch: int, num_timesteps: int = 1000, use_timestep_transform: bool = False,
                    height=None, width=None, num_frames=None) -> list[torch.Tensor]:
    ts = [(1.0 - i / num_steps) * num_timesteps for i in range(num_steps)]
    ts = [torch.tensor([t] * batch) for t in ts]
    if use_timestep_transform:
        ts = [timestep_transform(t, height, width, num_frames, num_timesteps=num_timesteps) for t in ts]
    return ts


@torch.no_grad()
def rflow_sample(model_fn: Callable[..., torch.Tensor], z: torch.Tensor, num_steps: int,
                 cfg_scale: float, num_timesteps: int = 1000, use_timestep_transform: bool = False,
                 height=None, width=None, num_frames=None, trajectory: Optional[list] = None,
                 x_mask: Optional[torch.Tensor] = None, x_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Euler integration from t = 1000 to 0 with classifier-free guidance (RFLOW.sample, mask=None).

    model_fn(z_in [2B, ...], t_in [2B]) must return the model output for the batch [cond | null]
    (the caller binds y = cat([caption, null]) and the micro-conditions); its first C = z.shape[1]
    channels are the velocity. If `trajectory` is a list, z after every step is appended.

    Frame conditioning (the 0/1 case of the official `mask`): with x_mask [B, T] bool (False = given
    frame) and x_cond [B, C, T, H, W], the given frames are held at x_cond before every model call and
    after every update, and the model is called as model_fn(z_in, t_in, x_mask=[x_mask, x_mask]) so that
    those frames take the t = 0 modulation. (The official loop additionally re-draws the generated
    frames' starting noise with torch.randn_like at the first step; here z is the starting noise.)
    Not covered by the golden fixture, which records only the mask-free path.
    """
    C = z.shape[1]
    timesteps = rflow_timesteps(num_steps, z.shape[0], num_timesteps, use_timestep_transform, height, width,
                                num_frames)
    keep = None
    if x_mask is not None:
        keep = x_mask[:, None, :, None, None].to(z.device)
        z = torch.where(keep, z, x_cond)
    for i, t in enumerate(timesteps):
        z_in = torch.cat([z, z], 0)
        t_in = torch.cat([t, t], 0).to(z.device)
        if x_mask is None:
            pred = model_fn(z_in, t_in)[:, :C]
        else:
            pred = model_fn(z_in, t_in, x_mask=torch.cat([x_mask, x_mask], 0))[:, :C]
        pred_cond, pred_uncond = pred.chunk(2, dim=0)
        v_pred = pred_uncond + cfg_scale * (pred_cond - pred_uncond)
        dt = timesteps[i] - timesteps[i + 1] if i < len(timesteps) - 1 else timesteps[i]
        dt = (dt / num_timesteps).to(z.device)
        z = z + v_pred * dt.view(-1, *([1] * (z.dim() - 1)))
        if keep is not None:
            z = torch.where(keep, z, x_cond)
        if trajectory is not None:
            trajectory.append(z.clone())
    return z
