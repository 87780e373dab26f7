"""Gaussian diffusion pieces used by the tools: DiT's training loss and two deterministic samplers.

- Schedule: linear betas 1e-4..0.02 over 1000 steps, computed in float64 (DiT / IDDPM).
- `hybrid_loss`: DiT `diffusion/gaussian_diffusion.py` `training_losses` with
  `ModelMeanType.EPSILON`, `ModelVarType.LEARNED_RANGE`, `LossType.MSE` (what
  `create_diffusion(timestep_respacing="")` builds): loss = mean((eps - eps_pred)^2) + vb, where vb
  is the VLB term (KL to the true posterior in bits/dim, decoder NLL at t = 0) computed with the
  eps prediction detached, so the VLB trains only the variance channels.
- `ddim_sample`: diffusers `DDIMScheduler` ("leading" spacing, eta 0, set_alpha_to_one,
  clip_sample False) — MODELS.md §4.4.
- `dpmpp2m_sample`: diffusers `DPMSolverMultistepScheduler` (dpmsolver++, order 2, midpoint,
  linspace spacing, final sigma 0) — MODELS.md §4.2.
Both samplers apply classifier-free guidance with the DiT batch order [cond | uncond] on the eps
channels only (the variance channels are split off and unused).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

T_TRAIN = 1000


class Schedule:
    def __init__(self, num_timesteps: int = T_TRAIN, beta_start: float = 1e-4, beta_end: float = 0.02):
        betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
        self.num_timesteps = num_timesteps
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self.log_betas = np.log(betas)


def _ex(arr: np.ndarray, t: torch.Tensor, shape) -> torch.Tensor:
    """DiT `_extract_into_tensor`: gather float64 table at t, cast to float32, broadcast."""
    res = torch.from_numpy(arr).to(device=t.device)[t].float()
    while len(res.shape) < len(shape):
        res = res[..., None]
    return res.expand(shape)


def q_sample(s: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return _ex(s.sqrt_alphas_cumprod, t, x0.shape) * x0 + _ex(s.sqrt_one_minus_alphas_cumprod, t, x0.shape) * noise


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def _approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def _discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


def _mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def hybrid_loss(s: Schedule, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor,
                t: torch.Tensor, noise: torch.Tensor) -> dict:
    """DiT training loss (per-sample terms); model_output is [B, 2C, H, W] (eps | v)."""
    C = x_t.shape[1]
    model_output = model_output.float()
    eps, var_values = torch.split(model_output, C, dim=1)
    mse = _mean_flat((noise - eps) ** 2)
    # VLB with frozen eps (trains the variance interpolation only)
    eps_d = eps.detach()
    min_log = _ex(s.posterior_log_variance_clipped, t, x_t.shape)
    max_log = _ex(s.log_betas, t, x_t.shape)
    frac = (var_values + 1) / 2
    model_log_variance = frac * max_log + (1 - frac) * min_log
    pred_x0 = _ex(s.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - _ex(s.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps_d
    model_mean = _ex(s.posterior_mean_coef1, t, x_t.shape) * pred_x0 + _ex(s.posterior_mean_coef2, t, x_t.shape) * x_t
    true_mean = _ex(s.posterior_mean_coef1, t, x_t.shape) * x0 + _ex(s.posterior_mean_coef2, t, x_t.shape) * x_t
    true_logvar = _ex(s.posterior_log_variance_clipped, t, x_t.shape)
    kl = _mean_flat(_normal_kl(true_mean, true_logvar, model_mean, model_log_variance)) / math.log(2.0)
    nll = -_mean_flat(_discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance)) / math.log(2.0)
    vb = torch.where(t == 0, nll, kl)
    return {"loss": mse + vb, "mse": mse, "vb": vb}


# --------------------------------------------------------------------------------------------
# samplers (deterministic given the starting noise)
# --------------------------------------------------------------------------------------------

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


def cfg_eps_fn(model, y: torch.Tensor, cfg_scale: float, null_class: int,
               autocast: bool = False) -> EpsFn:
    """eps(x, t) with CFG: batch [cond | uncond], guidance on the eps channels only."""
    C = model.in_channels

    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        B = x.shape[0]
        if cfg_scale == 1.0:
            xx, yy = x, y
        else:
            xx = torch.cat([x, x], 0)
            yy = torch.cat([y, torch.full_like(y, null_class)], 0)
        tt = torch.full((xx.shape[0],), int(t), dtype=torch.long, device=x.device)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(xx, tt, yy)
        eps = out.float()[:, :C]
        if cfg_scale == 1.0:
            return eps
        cond, uncond = eps[:B], eps[B:]
        return uncond + cfg_scale * (cond - uncond)

    return fn


def ddim_timesteps(n: int, num_train: int = T_TRAIN) -> list:
    ratio = num_train // n
    return [int(v) for v in (np.arange(0, n) * ratio).round()[::-1]]


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, xT: torch.Tensor, steps: int = 50, s: Optional[Schedule] = None) -> torch.Tensor:
    s = s or Schedule()
    ac = torch.from_numpy(s.alphas_cumprod.astype(np.float32))  # diffusers keeps float32
    x = xT.float()
    ratio = s.num_timesteps // steps
    for t in ddim_timesteps(steps, s.num_timesteps):
        eps = eps_fn(x, t)
        prev = t - ratio
        a_t = ac[t]
        a_prev = ac[prev] if prev >= 0 else torch.tensor(1.0)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


def dpm_timesteps(n: int, num_train: int = T_TRAIN) -> list:
    return [int(v) for v in np.linspace(0, num_train - 1, n + 1).round()[::-1][:-1]]


@torch.no_grad()
def dpmpp2m_sample(eps_fn: EpsFn, xT: torch.Tensor, steps: int = 50, s: Optional[Schedule] = None) -> torch.Tensor:
    s = s or Schedule()
    ac = s.alphas_cumprod.astype(np.float32).astype(np.float64)
    ts = dpm_timesteps(steps, s.num_timesteps)
    sig = [math.sqrt((1 - ac[t]) / ac[t]) for t in ts] + [0.0]

    def al_si(sigma):
        a = 1.0 / math.sqrt(sigma**2 + 1)
        return a, sigma * a

    x = xT.float()
    prev_m = None
    prev_lambda = None
    for i, t in enumerate(ts):
        eps = eps_fn(x, t)
        a_s, s_s = al_si(sig[i])
        m0 = (x - s_s * eps) / a_s
        lam_s = math.log(a_s) - math.log(s_s)
        if sig[i + 1] == 0.0:
            x = m0  # final step: first order to sigma 0 returns x0 exactly
        else:
            a_t, s_t = al_si(sig[i + 1])
            lam_t = math.log(a_t) - math.log(s_t)
            h = lam_t - lam_s
            if prev_m is None:
                x = (s_t / s_s) * x - a_t * (math.exp(-h) - 1.0) * m0
            else:
                h0 = lam_s - prev_lambda
                r0 = h0 / h
                D0 = m0
                D1 = (m0 - prev_m) / r0
                x = (s_t / s_s) * x - a_t * (math.exp(-h) - 1.0) * D0 - 0.5 * a_t * (math.exp(-h) - 1.0) * D1
        prev_m, prev_lambda = m0, lam_s
    return x
