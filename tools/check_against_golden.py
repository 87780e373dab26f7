"""Verify the Python re-implementations against the official golden fixtures.

Cases (each reported as `<case>: N passed, N failed`, then the total):

- `dit_b4_s8`: loads /work/shared/fixtures/golden/dit_b4_s8/weights.safetensors (official key names,
  strict) into `DiT` built from the fixture's config, runs `model(x, t, y)` and the upstream
  `forward_with_cfg(..., 4.0)` (guidance on 3 channels, as upstream), and compares with
  `output.out`, `cfg.output.out` and intermediates (atol = rtol = 1e-4).
- `samplers`: DDIM / DPM-Solver++ 2M (diffusers) with the fixture's fake model.
- `opensora_stdit3_d64`: loads the official Open-Sora v1.2 STDiT3 weights (strict, same key set)
  into `ditfa_tools.stdit3_model.STDiT3`, runs every recorded run (`main`, `xmask`) with its inputs
  and compares the output (recording path with the official float32 softmax, and the SDPA path
  used for training) and every recorded intermediate (atol = rtol = 1e-4).
- `samplers_rflow`: Open-Sora 1.2 RFLOW sampling (with and without the timestep transform, 10 and
  30 steps) with the fixture's fake model: timesteps (1e-6 relative) and trajectory/final
  (|a-b| <= 1e-5 * max(|b|, 1)), as the fixture README suggests.
- `fashion-dit`: the exported model against its own golden.safetensors (when present).

Exit code 1 on any failure.

    python tools/check_against_golden.py [--fixture DIR] [--only CASE ...]
"""

import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.diffusion import ddim_sample, ddim_timesteps, dpm_timesteps, dpmpp2m_sample  # noqa: E402
from ditfa_tools.dit_model import DiT  # noqa: E402

DEFAULT = os.environ.get("DITFA_GOLDEN", "/work/shared/fixtures/golden/dit_b4_s8")
GOLDEN = os.path.dirname(DEFAULT.rstrip("/"))
SAMPLERS = os.path.join(GOLDEN, "samplers")
CASES = ["dit_b4_s8", "samplers", "opensora_stdit3_d64", "samplers_rflow", "fashion-dit"]


class Tally:
    """Per-case pass/fail counts; `check` prints one line per comparison."""

    def __init__(self):
        self.case = None
        self.results: dict[str, list[bool]] = {}

    def start(self, case: str) -> None:
        self.case = case
        self.results.setdefault(case, [])
        print(f"== {case}")

    def add(self, ok: bool, line: str, quiet: bool = False) -> bool:
        self.results[self.case].append(ok)
        if not quiet or not ok:
            print(f"{'ok  ' if ok else 'FAIL'} {line}")
        return ok

    def check(self, name, got, want, tol=1e-4, quiet=False, rel_floor=False) -> float:
        """atol = rtol = tol (|a-b| <= tol + tol*|b|), or with rel_floor |a-b| <= tol*max(|b|, 1)."""
        if tuple(got.shape) != tuple(want.shape):
            self.add(False, f"{name:44s} shape {tuple(got.shape)} vs {tuple(want.shape)}")
            return float("inf")
        got, want = got.double(), want.double()
        err = (got - want).abs()
        bound = tol * want.abs().clamp(min=1) if rel_floor else tol + tol * want.abs()
        ok = bool((err <= bound).all())
        e = err.max().item() if err.numel() else 0.0
        self.add(ok, f"{name:44s} max_abs={e:.3e}", quiet=quiet)
        return e

    def summary(self) -> bool:
        tot_ok = tot_bad = 0
        for case, r in self.results.items():
            n_ok = sum(r)
            tot_ok, tot_bad = tot_ok + n_ok, tot_bad + len(r) - n_ok
            print(f"{case}: {n_ok} passed, {len(r) - n_ok} failed")
        print(f"{tot_ok} passed, {tot_bad} failed")
        return tot_bad == 0


def check_dit(args, T: Tally) -> None:
    T.start("dit_b4_s8")
    check = T.check
    case = json.load(open(os.path.join(args.fixture, "case.json")))
    cfg = case["config"]
    model = DiT(**cfg).eval()
    sd = load_file(os.path.join(args.fixture, "weights.safetensors"))
    model.load_state_dict(sd, strict=True)
    io = load_file(os.path.join(args.fixture, "io.safetensors"))

    # the fixture's pos_embed must equal our freshly computed table
    fresh = DiT(**cfg)
    check("pos_embed (recomputed)", fresh.pos_embed.data, io["inter.pos_embed"])
    check("pos_embed (weights)", sd["pos_embed"], io["inter.pos_embed"])
    with torch.no_grad():
        x, t, y = io["input.x"], io["input.t"], io["input.y"]
        check("t_freq", model.t_embedder.timestep_embedding(t, 256), io["inter.t_freq"])
        check("t_emb", model.t_embedder(t), io["inter.t_emb"])
        check("y_emb", model.y_embedder(y), io["inter.y_emb"])
        check("x_tokens", model.x_embedder(x) + model.pos_embed, io["inter.x_tokens"])
        model.blocks[0].attn.record = []
        out = model(x, t, y)
        model.blocks[0].attn.record = None
        check("output.out (explicit softmax)", out, io["output.out"])
        # attention map path (used by the analysis script) must give the same output
        out2 = model(x, t, y)
        check("output.out (sdpa)", out2, io["output.out"])
        check("output.out_t0", model(x, torch.zeros_like(t), y), io["output.out_t0"])
        cfg_out = model.forward_with_cfg(io["cfg.input.x"], io["cfg.input.t"], io["cfg.input.y"],
                                         float(io["cfg.input.cfg_scale"][0]), guided_channels=3)
        check("cfg.output.out", cfg_out, io["cfg.output.out"])
        check("cfg.output.raw_forward", model(io["cfg.input.x"], io["cfg.input.t"], io["cfg.input.y"]),
              io["cfg.output.raw_forward"])


def check_samplers(args, T: Tally) -> None:
    """diffusers DDIM / DPM-Solver++ 2M with the fixture's fake model."""
    sp = os.path.join(args.samplers, "io.safetensors")
    if not os.path.exists(sp):
        print(f"skip samplers: {sp} not found")
        return
    T.start("samplers")
    si = load_file(sp)
    xT = si["xT"]

    def fake_eps(x, t):
        return 0.1 * x + math.sin(t / 100)

    for n in (10, 20):
        want_ts = si[f"ddim_ditconfig.steps{n}.timesteps"].tolist()
        T.add(ddim_timesteps(n) == want_ts, f"ddim timesteps {n}")
        want = si[f"ddim_ditconfig.steps{n}.final"]
        T.check(f"ddim steps{n} final", ddim_sample(fake_eps, xT, n), want, tol=1e-4)
        want_ts = si[f"dpmpp2m_ditconfig.steps{n}.timesteps"].tolist()
        T.add(dpm_timesteps(n) == want_ts, f"dpm++ timesteps {n}")
        want = si[f"dpmpp2m_ditconfig.steps{n}.final"]
        T.check(f"dpm++2m steps{n} final", dpmpp2m_sample(fake_eps, xT, n), want, tol=1e-4)


def check_stdit3(args, T: Tally) -> None:
    """Open-Sora v1.2 STDiT3: strict weights, every run's output and every recorded intermediate."""
    from ditfa_tools.stdit3_model import STDiT3

    d = args.stdit3
    if not os.path.exists(os.path.join(d, "case.json")):
        print(f"skip opensora_stdit3_d64: {d} not found")
        return
    T.start("opensora_stdit3_d64")
    case = json.load(open(os.path.join(d, "case.json")))
    model = STDiT3(**case["config"]).eval()
    sd = load_file(os.path.join(d, "weights.safetensors"))
    ours = set(model.state_dict())
    T.add(ours == set(sd), f"state_dict keys identical ({len(sd)} tensors; "
                           f"missing {sorted(set(sd) - ours)}, extra {sorted(ours - set(sd))})")
    model.load_state_dict(sd, strict=True)
    T.check("rope.freqs (recomputed)", STDiT3(**case["config"]).rope.freqs.data, sd["rope.freqs"], tol=1e-6)
    io = load_file(os.path.join(d, "io.safetensors"))
    for run in case["runs"]:
        def inp(k):
            return io.get(f"{run}.input.{k}")

        x_mask = inp("x_mask")
        kwargs = dict(mask=inp("mask"), x_mask=None if x_mask is None else x_mask.bool(), fps=inp("fps"),
                      height=inp("height"), width=inp("width"))
        rec: dict = {}
        with torch.no_grad():
            model.record(rec, prefix=f"{run}.inter.")
            out_rec = model(inp("x"), inp("t"), inp("y"), **kwargs)
            model.record(None)
            out_sdpa = model(inp("x"), inp("t"), inp("y"), **kwargs)
        want = io[f"{run}.output.out"]
        T.check(f"{run}.output.out (official softmax path)", out_rec, want)
        T.check(f"{run}.output.out (sdpa path)", out_sdpa, want)
        names = sorted(k for k in io if k.startswith(f"{run}.inter."))
        worst, worst_name = 0.0, None
        for k in names:
            if k not in rec:
                T.add(False, f"{k}: not produced by the model")
                continue
            e = T.check(k, rec[k], io[k], quiet=True)
            if e >= worst:
                worst, worst_name = e, k
        extra = sorted(set(rec) - set(names))
        T.add(not extra, f"{run}: {len(names)} intermediates compared, worst {worst_name} max_abs={worst:.3e}"
                         + (f"; recorded but not in the fixture: {extra}" if extra else ""))


def check_samplers_rflow(args, T: Tally) -> None:
    """Open-Sora 1.2 RFLOW.sample (mask-free) with the fixture's fake model."""
    from ditfa_tools.rflow import rflow_sample, rflow_timesteps

    d = args.samplers_rflow
    if not os.path.exists(os.path.join(d, "case.json")):
        print(f"skip samplers_rflow: {d} not found")
        return
    T.start("samplers_rflow")
    case = json.load(open(os.path.join(d, "case.json")))
    io = load_file(os.path.join(d, "io.safetensors"))
    z = io["z"]
    B = z.shape[0]
    a = case["additional_args"]
    f32 = lambda v: torch.full((B,), float(v), dtype=torch.float32)  # noqa: E731
    hw = dict(height=f32(a["height"]), width=f32(a["width"]), num_frames=f32(a["num_frames"]))
    cfg = float(case["cfg_scale"])

    def fake_model(z_in, t_in):
        yb = torch.cat([torch.ones(B), torch.zeros(B)]).view(-1, 1, 1, 1, 1)
        v = 0.1 * z_in + torch.sin(t_in / 100).view(-1, 1, 1, 1, 1) + 0.05 * yb
        return torch.cat([v, torch.tanh(0.5 * z_in)], dim=1)

    for scen, transform in (("rflow", False), ("rflow_transform", True)):
        for n in (10, 30):
            key = f"{scen}.steps{n}"
            ts = rflow_timesteps(n, B, use_timestep_transform=transform, **hw)
            T.check(f"{key}.timesteps", torch.stack([t[0] for t in ts]), io[f"{key}.timesteps"], tol=1e-6,
                    rel_floor=True)
            traj: list = []
            final = rflow_sample(fake_model, z.clone(), n, cfg, use_timestep_transform=transform,
                                 trajectory=traj, **hw)
            T.check(f"{key}.trajectory", torch.stack(traj), io[f"{key}.trajectory"], tol=1e-5, rel_floor=True)
            T.check(f"{key}.final", final, io[f"{key}.final"], tol=1e-5, rel_floor=True)


def check_fashion_dit(args, T: Tally) -> None:
    """The bundled model's own golden file (weights.safetensors -> golden.safetensors)."""
    if not (args.model and os.path.exists(os.path.join(args.model, "golden.safetensors"))):
        return
    from ditfa_tools.loading import load_dit

    T.start("fashion-dit")
    fm, _, _ = load_dit(args.model)
    gd = load_file(os.path.join(args.model, "golden.safetensors"))
    with torch.no_grad():
        T.check("fashion-dit output.out", fm(gd["input.x"], gd["input.t"], gd["input.y"]), gd["output.out"])
        T.check("fashion-dit cfg.output.out",
                fm.forward_with_cfg(gd["cfg.input.x"], gd["cfg.input.t"], gd["cfg.input.y"], 4.0),
                gd["cfg.output.out"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", default=DEFAULT, help="dit_b4_s8 fixture folder")
    ap.add_argument("--samplers", default=SAMPLERS)
    ap.add_argument("--stdit3", default=os.path.join(GOLDEN, "opensora_stdit3_d64"))
    ap.add_argument("--samplers-rflow", default=os.path.join(GOLDEN, "samplers_rflow"))
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "models", "fashion-dit"),
                    help="also check this exported model against its golden.safetensors")
    ap.add_argument("--only", nargs="+", choices=CASES, default=None, help="run only these cases")
    args = ap.parse_args()
    torch.set_num_threads(1)
    T = Tally()
    runners = {"dit_b4_s8": check_dit, "samplers": check_samplers, "opensora_stdit3_d64": check_stdit3,
               "samplers_rflow": check_samplers_rflow, "fashion-dit": check_fashion_dit}
    for name in CASES:
        if args.only is None or name in args.only:
            runners[name](args, T)
    return 0 if T.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
