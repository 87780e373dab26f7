"""Train the bundled class-conditional DiT on Fashion-MNIST (32x32 pixel space, 1 channel).

Standard DiT recipe (facebookresearch/DiT train.py + diffusion/): linear betas 1e-4..0.02 over
1000 steps, uniform t, eps-prediction MSE + learned-variance VLB term (hybrid loss), class dropout
0.1 to the null class, random horizontal flip, AdamW, EMA. Differences, for a short CPU run: lr
3e-4 with linear warmup, EMA decay 0.999 with the usual warm-up min(decay, (1+n)/(10+n)),
gradient-norm clipping at 1.0, bf16 autocast (master weights and loss in float32).

Deterministic given --seed (for a fixed device and thread count): the data order of epoch e is a
permutation drawn from seed+e, and t, noise, flips and label drops come from one torch.Generator
whose state is checkpointed.

Resumable: a checkpoint (model, EMA, optimizer, generator state, step, epoch, position in the
epoch, elapsed time, args) is written atomically every --ckpt-minutes to every --ckpt-dir
(default: runs/dit/ in the repo and /work/ditfa-train/), on SIGTERM/SIGINT, and at the end.
`--resume auto` continues from the newest checkpoint found in those directories.
Log: JSON lines {step, loss, mse, vb, lr, samples_per_s, wall_s, ...} appended to log.jsonl in
every checkpoint directory (the log up to the checkpoint is also stored inside it).

    nohup nice -n 19 python tools/train_dit.py --resume auto > runs/dit/train.out 2>&1 &
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.data import load_split, to_model_space  # noqa: E402
from ditfa_tools.diffusion import Schedule, hybrid_loss, q_sample  # noqa: E402
from ditfa_tools.dit_model import FASHION_DIT_CONFIG, build_dit  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIRS = [os.path.join(REPO, "runs", "dit"), "/work/ditfa-train"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adaptive-threads", type=int, default=1,
                    help="1: drop to 1 thread when a step suddenly gets 3x slower, and every 200 steps try the "
                         "other count for <= 3 steps, keeping the faster (a niced job sharing a busy 2-core "
                         "machine stalls with 2 threads); 0: always --threads")
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 (no bf16 autocast)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the forward (about 15%% faster on a 2-core AVX-512 CPU, ~50 s to compile; "
                         "checkpoints are the same format either way)")
    ap.add_argument("--ckpt-dir", action="append", default=None,
                    help="checkpoint/log directory (repeatable); default runs/dit and /work/ditfa-train")
    ap.add_argument("--ckpt-minutes", type=float, default=8.0)
    ap.add_argument("--snapshot-every", type=int, default=1000,
                    help="also keep an EMA-only snapshot ema_<step>.pt every N steps (first dir only)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--resume", default="auto", help="'auto', 'none', or a checkpoint path")
    ap.add_argument("--config", default=None, help="JSON model config (default: FASHION_DIT_CONFIG)")
    ap.add_argument("--init-weights", default=None,
                    help="start from exported weights (safetensors in DiT names, e.g. models/fashion-dit/weights.safetensors) "
                         "with a fresh optimizer; model and EMA both start from them. Only when no checkpoint is resumed.")
    ap.add_argument("--init-step", type=int, default=0,
                    help="with --init-weights: the step those weights were trained to (the log and EMA warm-up continue from it)")
    ap.add_argument("--init-log", default=None,
                    help="with --init-weights: a log.jsonl to carry over (rows up to --init-step)")
    return ap.parse_args(argv)


def atomic_save(obj, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def find_resume(args) -> str | None:
    if args.resume == "none":
        return None
    if args.resume != "auto":
        return args.resume
    best, best_step = None, -1
    for d in args.ckpt_dir:
        p = os.path.join(d, "ckpt.pt")
        if os.path.exists(p):
            try:
                step = torch.load(p, map_location="cpu", weights_only=False)["step"]
            except Exception as e:  # a broken copy: try the other directory
                print(f"warning: cannot read {p}: {e}", flush=True)
                continue
            if step > best_step:
                best, best_step = p, step
    return best


def main(argv=None) -> None:
    args = parse_args(argv)
    args.ckpt_dir = args.ckpt_dir or DEFAULT_DIRS
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    use_bf16 = not args.no_bf16
    config = dict(FASHION_DIT_CONFIG)
    if args.config:
        config.update(json.load(open(args.config)))

    images, labels = load_split("train")
    data_x = to_model_space(images)  # [N, 1, 32, 32] in [-1, 1]
    data_y = torch.from_numpy(labels)
    N = data_x.shape[0]

    torch.manual_seed(args.seed)
    model = build_dit(config).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    sched = Schedule()

    step, epoch, pos, elapsed = 0, 0, 0, 0.0
    log_rows: list = []
    ckpt_path = find_resume(args)
    if ckpt_path:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"] != config:
            raise SystemExit(f"config mismatch: checkpoint {ck['config']} vs {config}")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        step, epoch, pos, elapsed = ck["step"], ck["epoch"], ck["pos"], ck["elapsed"]
        log_rows = ck.get("log", [])
        print(f"resumed from {ckpt_path} at step {step} (epoch {epoch}, pos {pos})", flush=True)
    elif args.init_weights:
        from safetensors.torch import load_file

        sd = load_file(args.init_weights)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k != "pos_embed"]  # fixed sin-cos table, rebuilt by build_dit
        if missing or unexpected:
            raise SystemExit(f"--init-weights {args.init_weights}: missing {missing}, unexpected {unexpected}")
        ema.load_state_dict(model.state_dict())
        step = args.init_step
        epoch, pos = divmod(step * args.batch_size, N)
        pos = pos - pos % args.batch_size
        if args.init_log:
            with open(args.init_log) as f:
                log_rows = [r for r in map(json.loads, f) if r["step"] <= step]
            elapsed = log_rows[-1]["wall_s"] if log_rows else 0.0
        print(f"initialised from {args.init_weights} at step {step} (fresh optimizer, epoch {epoch}, pos {pos})", flush=True)
    else:
        print("starting from scratch", flush=True)
    for d in args.ckpt_dir:
        os.makedirs(d, exist_ok=True)
        # rewrite the log from the checkpoint so the log and the checkpoint always agree
        with open(os.path.join(d, "log.jsonl"), "w") as f:
            for r in log_rows:
                f.write(json.dumps(r) + "\n")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"config {config} params {n_params} device {device} bf16 {use_bf16} threads {args.threads}", flush=True)

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
    acc = {"loss": 0.0, "mse": 0.0, "vb": 0.0, "n": 0}
    model.train()
    forward = torch.compile(model) if args.compile else model
    # adaptive thread count (CPU): a niced job whose 2 OpenMP threads share a busy 2-core machine
    # can stall (the thread that shares a core is starved and the other one waits at every barrier)
    from collections import deque

    thr = {"cur": 1 if args.adaptive_threads else args.threads, "recent": deque(maxlen=10), "probe": None, "probe_times": []}
    alt_of = {args.threads: 1, 1: args.threads}

    def set_threads(n: int) -> None:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def pick_threads(step_dt: float | None) -> None:
        if not args.adaptive_threads or args.threads == 1 or device.type != "cpu" or step_dt is None:
            return
        cur = thr["cur"]
        if thr["probe"] is None:
            med = float(np.median(thr["recent"])) if len(thr["recent"]) >= 5 else None
            if cur != 1 and med is not None and step_dt > 3 * med:  # sudden contention: fall back now
                print(f"step took {step_dt:.1f}s (median {med:.1f}s): threads {cur} -> 1", flush=True)
                thr["cur"], thr["recent"] = 1, deque(maxlen=10)
                set_threads(1)
                return
            thr["recent"].append(step_dt)
            if (step % 200 == 0 or step == 20) and med is not None:  # probe the other count for up to 3 steps
                thr["probe"], thr["probe_times"], thr["ref"] = alt_of[cur], [], med
                set_threads(thr["probe"])
            return
        thr["probe_times"].append(step_dt)
        alt = thr["probe"]
        slow = step_dt > 2 * thr["ref"]
        if slow or len(thr["probe_times"]) >= 3:
            alt_med = float(np.median(thr["probe_times"][1:] or thr["probe_times"]))
            if not slow and alt_med < 0.85 * thr["ref"]:
                print(f"threads {cur} -> {alt} ({thr['ref']:.2f}s -> {alt_med:.2f}s per step)", flush=True)
                thr["cur"], thr["recent"] = alt, deque(maxlen=10)
            thr["probe"] = None
            set_threads(thr["cur"])

    set_threads(thr["cur"])
    step_dt = None
    while step < args.max_steps and not stop["flag"]:
        pick_threads(step_dt)
        t_step = time.time()
        if pos + args.batch_size > N:
            epoch, pos = epoch + 1, 0
            perm = perm_for(epoch)
        idx = perm[pos: pos + args.batch_size]
        pos += args.batch_size
        x0 = data_x[idx].clone()
        y = data_y[idx].clone()
        B = x0.shape[0]
        flip = torch.rand(B, generator=gen) < 0.5
        x0[flip] = x0[flip].flip(-1)
        drop = torch.rand(B, generator=gen) < config["class_dropout_prob"]
        y[drop] = config["num_classes"]
        t = torch.randint(0, sched.num_timesteps, (B,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x0, y, t, noise = x0.to(device), y.to(device), t.to(device), noise.to(device)
        x_t = q_sample(sched, x0, t, noise)

        lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = forward(x_t, t, y)
        terms = hybrid_loss(sched, out.float(), x0, x_t, t, noise)
        loss = terms["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        step_dt = time.time() - t_step
        win_n += B
        acc["loss"] += loss.item()
        acc["mse"] += terms["mse"].mean().item()
        acc["vb"] += terms["vb"].mean().item()
        acc["n"] += 1

        if step % args.log_every == 0:
            now = time.time()
            dt = now - win_t
            elapsed += dt
            row = {
                "step": step,
                "loss": acc["loss"] / acc["n"],
                "mse": acc["mse"] / acc["n"],
                "vb": acc["vb"] / acc["n"],
                "lr": lr,
                "samples_per_s": win_n / dt,
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
            acc = {"loss": 0.0, "mse": 0.0, "vb": 0.0, "n": 0}
        if args.snapshot_every and step % args.snapshot_every == 0:
            atomic_save({"ema": ema.state_dict(), "config": config, "step": step},
                        os.path.join(args.ckpt_dir[0], f"ema_{step:07d}.pt"))
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    print("stopped" if stop["flag"] else "done", flush=True)


if __name__ == "__main__":
    main()
