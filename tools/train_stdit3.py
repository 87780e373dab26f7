"""Train the small Open-Sora v1.2 STDiT3 video model on Moving Fashion-MNIST (pixel space, 1 channel).

Model: `ditfa_tools.stdit3_model.STDiT3` (official formulas and key names) with STDIT3_VIDEO_CONFIG
below; data: `ditfa_tools.moving_fashion` clips (8 frames of 32x32, an 18 px item moving and
bouncing), class conditioning through the caption path with fixed per-class caption embeddings
[10, 4, 64] (stored in every checkpoint), caption dropout 0.1 to the learned null caption for CFG.

Recipe: Open-Sora 1.2 rectified flow (`ditfa_tools.rflow`, the convention of the official
`RFlowScheduler`): x_t = (1 - t/1000) x0 + (t/1000) noise, target velocity x0 - noise, MSE on the
velocity half of the output, logit-normal t (loc 0, scale 1) as the v1.2 training configs. The
v1.2 configs also set `use_timestep_transform=True`, but that transform is built for VAE latents of
>= 17-frame videos at hundreds of pixels: for 8 frames it gives num_frames // 17 * 5 = 0 and maps
every t to 0, so it is off here (and in sampling). Open-Sora's frame conditioning is kept in a small
dose: with probability --cond-prob a clip gets its first 1 or 2 frames as clean conditioning frames
(x_mask False, x_t = x0 there, loss only on the other frames, as `mean_flat(..., mask)`), like the
official "image_head"/"quarter_head" masks. AdamW (no weight decay), lr with linear warm-up, EMA
with the usual warm-up min(decay, (1+n)/(10+n)), gradient clipping 1.0 (Open-Sora: grad_clip 1.0),
bf16 autocast (float32 master weights and loss).

Deterministic given --seed (fixed device and thread count): the data order of epoch e is a
permutation from seed+e, each clip's motion comes from (data seed, epoch, index), and t, noise,
caption drops and conditioning masks come from one checkpointed torch.Generator.

Resumable: a checkpoint (model, EMA, optimizer, generator and torch RNG state, step, epoch,
position in the epoch, elapsed time, args, config, data config, captions, log) is written
atomically every --ckpt-minutes to every --ckpt-dir (default runs/stdit3/ and
/work/ditfa-train-video/), on SIGTERM/SIGINT and at the end; `--resume auto` continues from the
newest. Log: log.jsonl (one JSON line per --log-every steps) in each checkpoint folder.

    mkdir -p runs/stdit3
    nohup nice -n 19 python tools/train_stdit3.py --threads 1 --resume auto > runs/stdit3/train.out 2>&1 &
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import load_split  # noqa: E402
from ditfa_tools.moving_fashion import MovingFashion, class_captions  # noqa: E402
from ditfa_tools.rflow import add_noise, sample_t  # noqa: E402
from ditfa_tools.stdit3_model import build_stdit3  # noqa: E402
from train_dit import atomic_save, find_resume  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIRS = [os.path.join(REPO, "runs", "stdit3"), "/work/ditfa-train-video"]

# the project's video model (see tools/README.md, "The video model")
STDIT3_VIDEO_CONFIG = dict(
    input_sq_size=32,  # = the canvas, so the position-embedding scale sqrt(H*W)/input_sq_size is 1
    in_channels=1,
    patch_size=[1, 4, 4],
    hidden_size=192,
    depth=4,  # 4 spatial + 4 temporal blocks
    num_heads=6,  # head_dim 32
    mlp_ratio=4.0,
    class_dropout_prob=0.1,
    pred_sigma=True,  # official layout: 2*C_in output channels, the second half unused by RFLOW
    caption_channels=64,
    model_max_length=4,  # caption tokens per class
    qk_norm=True,
)

DATA_CONFIG = dict(
    canvas=32,
    item=18,
    frames=8,
    max_speed=3,
    fps=8,  # the fps micro-condition (constant)
    num_classes=10,
    caption_length=4,
    caption_channels=64,
    caption_seed=20240601,
)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=200_000)
    ap.add_argument("--t-sampling", default="logit-normal", choices=["logit-normal", "uniform"])
    ap.add_argument("--cond-prob", type=float, default=0.1,
                    help="probability that a clip gets its first 1-2 frames as clean conditioning frames (x_mask)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 (no bf16 autocast)")
    ap.add_argument("--compile", type=int, default=1,
                    help="1: torch.compile the forward (about 2x faster on this CPU after a ~3 min compile); 0: eager")
    ap.add_argument("--attn", default="math", choices=["math", "sdpa"],
                    help="attention kernel: matmul + float32 softmax (the official non-flash path; faster on CPU for "
                         "the short temporal sequences) or F.scaled_dot_product_attention")
    ap.add_argument("--ckpt-dir", action="append", default=None,
                    help="checkpoint/log directory (repeatable); default runs/stdit3 and /work/ditfa-train-video")
    ap.add_argument("--ckpt-minutes", type=float, default=8.0)
    ap.add_argument("--snapshot-every", type=int, default=1000,
                    help="also keep an EMA-only snapshot ema_<step>.pt every N steps (first dir only)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--resume", default="auto", help="'auto', 'none', or a checkpoint path")
    ap.add_argument("--config", default=None, help="JSON file overriding STDIT3_VIDEO_CONFIG / DATA_CONFIG keys")
    ap.add_argument("--bench", type=int, default=0,
                    help="only time N steps (after 2 warm-up steps) and print the seconds per step; no checkpoints")
    return ap.parse_args(argv)


def load_configs(path: str | None) -> tuple[dict, dict]:
    config, data_config = dict(STDIT3_VIDEO_CONFIG), dict(DATA_CONFIG)
    if path:
        over = json.load(open(path))
        for k, v in over.items():
            if k in config:
                config[k] = v
            elif k in data_config:
                data_config[k] = v
            else:
                raise SystemExit(f"unknown config key {k!r}")
    config["patch_size"] = list(config["patch_size"])
    data_config["caption_length"] = config["model_max_length"]
    data_config["caption_channels"] = config["caption_channels"]
    return config, data_config


def main(argv=None) -> None:
    args = parse_args(argv)
    args.ckpt_dir = args.ckpt_dir or DEFAULT_DIRS
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    use_bf16 = not args.no_bf16
    config, dc = load_configs(args.config)

    images, labels = load_split("train")
    ds = MovingFashion(images, labels, canvas=dc["canvas"], item=dc["item"], frames=dc["frames"],
                       max_speed=dc["max_speed"], seed=args.seed)
    N = len(ds)
    captions = class_captions(dc["num_classes"], dc["caption_length"], dc["caption_channels"], dc["caption_seed"])

    torch.manual_seed(args.seed)
    model = build_stdit3(config).to(device)
    model.set_explicit_softmax(args.attn == "math")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)

    step, epoch, pos, elapsed = 0, 0, 0, 0.0
    log_rows: list = []
    ckpt_path = None if args.bench else find_resume(args)
    if ckpt_path:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"] != config or ck["data_config"] != dc:
            raise SystemExit(f"config mismatch: checkpoint {ck['config']} {ck['data_config']} vs {config} {dc}")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        step, epoch, pos, elapsed = ck["step"], ck["epoch"], ck["pos"], ck["elapsed"]
        log_rows = ck.get("log", [])
        print(f"resumed from {ckpt_path} at step {step} (epoch {epoch}, pos {pos})", flush=True)
    elif not args.bench:
        print("starting from scratch", flush=True)
    if not args.bench:
        for d in args.ckpt_dir:
            os.makedirs(d, exist_ok=True)
            # rewrite the log from the checkpoint so the log and the checkpoint always agree
            with open(os.path.join(d, "log.jsonl"), "w") as f:
                for r in log_rows:
                    f.write(json.dumps(r) + "\n")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    T, Hc, Wc = dc["frames"], dc["canvas"], dc["canvas"]
    S = -(-Hc // config["patch_size"][1]) * -(-Wc // config["patch_size"][2])
    print(f"config {config} data {dc} params {n_params} tokens S={S} x T={T} = {S * T} device {device} "
          f"bf16 {use_bf16} threads {args.threads}", flush=True)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def save():
        ck = {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "epoch": epoch,
            "pos": pos,
            "elapsed": elapsed,
            "config": config,
            "data_config": dc,
            "captions": captions,
            "args": vars(args),
            "log": log_rows,
        }
        for d in args.ckpt_dir:
            atomic_save(ck, os.path.join(d, "ckpt.pt"))
        print(f"checkpoint at step {step}", flush=True)

    def perm_for(e: int) -> torch.Tensor:
        return torch.randperm(N, generator=torch.Generator().manual_seed(args.seed * 100_003 + e))

    perm = perm_for(epoch)
    last_ckpt = time.time()
    win_t, win_n = time.time(), 0
    acc = {"loss": 0.0, "gnorm": 0.0, "n": 0}
    model.train()
    forward = torch.compile(model) if args.compile else model  # same checkpoint format either way
    cond_max = max(1, T // 4)  # Open-Sora "quarter_head": up to a quarter of the frames
    fps = torch.full((args.batch_size,), float(dc["fps"]), device=device)
    bench_times: list = []
    while step < args.max_steps and not stop["flag"]:
        t_step = time.time()
        if pos + args.batch_size > N:
            epoch, pos = epoch + 1, 0
            perm = perm_for(epoch)
        idx = perm[pos: pos + args.batch_size]
        pos += args.batch_size
        x0, cls, _ = ds.batch(idx.tolist(), epoch)
        B = x0.shape[0]
        drop = (torch.rand(B, generator=gen) < config["class_dropout_prob"]).long()
        t = sample_t(B, gen, args.t_sampling)
        noise = torch.randn(x0.shape, generator=gen)
        cond = torch.rand(B, generator=gen) < args.cond_prob
        n_cond = torch.randint(1, cond_max + 1, (B,), generator=gen)
        x_mask = ~(cond[:, None] & (torch.arange(T)[None] < n_cond[:, None]))  # False = clean conditioning frame
        y = captions[cls][:, None]  # [B, 1, L, C_cap]
        x0, t, noise, y, drop, x_mask = (v.to(device) for v in (x0, t, noise, y, drop, x_mask))
        x_t = add_noise(x0, noise, t)
        # frames with x_mask False are clean (t = 0); x_mask is always passed (all True = no conditioning,
        # numerically the same as None) so that a compiled forward sees one graph
        x_t = torch.where(x_mask[:, None, :, None, None], x_t, x0)

        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = forward(x_t, t, y, mask=None, x_mask=x_mask, fps=fps[:B], height=float(Hc), width=float(Wc),
                          force_drop_ids=drop)
        v = out[:, : config["in_channels"]].float()
        err = (v - (x0 - noise)).pow(2)  # [B, C, T, H, W]
        # Open-Sora mean_flat(..., mask): per clip, the mean over the generated (x_mask True) frames only
        m = x_mask.float()[:, None, :, None, None]
        per = (err * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * err.shape[1] * err.shape[3] * err.shape[4])
        loss = per.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip if args.grad_clip > 0 else 1e9)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        step_dt = time.time() - t_step
        if args.bench:
            bench_times.append(step_dt)
            print(f"bench step {step}: {step_dt:.3f} s loss {loss.item():.4f}", flush=True)
            if len(bench_times) >= args.bench + 2:
                import statistics

                ts = bench_times[2:]
                print(json.dumps({"bench_s_per_step_median": round(statistics.median(ts), 3),
                                  "bench_s_per_step_mean": round(sum(ts) / len(ts), 3), "steps": len(ts),
                                  "batch": args.batch_size, "params": n_params, "tokens": S * T,
                                  "threads": args.threads, "bf16": use_bf16, "compile": bool(args.compile), "attn": args.attn,
                                  "config": config}), flush=True)
                return
            continue
        win_n += B
        acc["loss"] += loss.item()
        acc["gnorm"] += float(gnorm)
        acc["n"] += 1

        if step % args.log_every == 0:
            now = time.time()
            dt = now - win_t
            elapsed += dt
            row = {
                "step": step,
                "loss": acc["loss"] / acc["n"],
                "grad_norm": acc["gnorm"] / acc["n"],
                "lr": lr,
                "samples_per_s": win_n / dt,
                "s_per_step": dt / acc["n"],
                "wall_s": round(elapsed, 1),
                "epoch": epoch,
                "time": round(now, 1),
                "device": device.type,
                "threads": torch.get_num_threads(),
            }
            log_rows.append(row)
            line = json.dumps(row)
            for d in args.ckpt_dir:
                with open(os.path.join(d, "log.jsonl"), "a") as f:
                    f.write(line + "\n")
            print(line, flush=True)
            win_t, win_n = time.time(), 0
            acc = {"loss": 0.0, "gnorm": 0.0, "n": 0}
        if args.snapshot_every and step % args.snapshot_every == 0:
            atomic_save({"ema": ema.state_dict(), "config": config, "data_config": dc, "captions": captions,
                         "step": step}, os.path.join(args.ckpt_dir[0], f"ema_{step:07d}.pt"))
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    print("stopped" if stop["flag"] else "done", flush=True)


if __name__ == "__main__":
    main()
