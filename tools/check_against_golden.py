"""Verify tools/ditfa_tools/dit_model.py against the official-DiT golden fixture.

Loads /work/shared/fixtures/golden/dit_b4_s8/weights.safetensors (official key names, strict) into
`DiT` built from the fixture's config, runs `model(x, t, y)` and the upstream
`forward_with_cfg(..., 4.0)` (guidance on 3 channels, as upstream), and compares with
`output.out`, `cfg.output.out` and intermediates (atol = rtol = 1e-4). Exit code 1 on failure.

    python tools/check_against_golden.py [--fixture DIR]
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ditfa_tools.diffusion import ddim_sample, ddim_timesteps, dpm_timesteps, dpmpp2m_sample  # noqa: E402
from ditfa_tools.dit_model import DiT  # noqa: E402

DEFAULT = os.environ.get("DITFA_GOLDEN", "/work/shared/fixtures/golden/dit_b4_s8")
SAMPLERS = os.path.join(os.path.dirname(DEFAULT.rstrip("/")), "samplers")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default=DEFAULT)
    ap.add_argument("--samplers", default=SAMPLERS)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "models", "fashion-dit"),
                    help="also check this exported model against its golden.safetensors")
    args = ap.parse_args()
    torch.set_num_threads(1)
    case = json.load(open(os.path.join(args.fixture, "case.json")))
    cfg = case["config"]
    model = DiT(**cfg).eval()
    sd = load_file(os.path.join(args.fixture, "weights.safetensors"))
    model.load_state_dict(sd, strict=True)
    io = load_file(os.path.join(args.fixture, "io.safetensors"))

    # the fixture's pos_embed must equal our freshly computed table
    fresh = DiT(**cfg)
    results = []

    def check(name, got, want, tol=1e-4):
        err = (got - want).abs()
        ok = bool((err <= tol + tol * want.abs()).all())
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name:34s} max_abs={err.max().item():.3e}")

    check("pos_embed (recomputed)", fresh.pos_embed.data, io["inter.pos_embed"])
    check("pos_embed (weights)", sd["pos_embed"], io["inter.pos_embed"])
    with torch.no_grad():
        x, t, y = io["input.x"], io["input.t"], io["input.y"]
        rec = {}
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

    # samplers (diffusers DDIM / DPM-Solver++ 2M) with the fixture's fake model
    sp = os.path.join(args.samplers, "io.safetensors")
    if os.path.exists(sp):
        import math

        si = load_file(sp)
        xT = si["xT"]

        def fake_eps(x, t):
            return 0.1 * x + math.sin(t / 100)

        for n in (10, 20):
            want_ts = si[f"ddim_ditconfig.steps{n}.timesteps"].tolist()
            results.append(ddim_timesteps(n) == want_ts)
            print(f"{'ok  ' if results[-1] else 'FAIL'} ddim timesteps {n}")
            want = si[f"ddim_ditconfig.steps{n}.final"]
            check(f"ddim steps{n} final", ddim_sample(fake_eps, xT, n), want, tol=1e-4)
            want_ts = si[f"dpmpp2m_ditconfig.steps{n}.timesteps"].tolist()
            results.append(dpm_timesteps(n) == want_ts)
            print(f"{'ok  ' if results[-1] else 'FAIL'} dpm++ timesteps {n}")
            want = si[f"dpmpp2m_ditconfig.steps{n}.final"]
            check(f"dpm++2m steps{n} final", dpmpp2m_sample(fake_eps, xT, n), want, tol=1e-4)
    else:
        print(f"skip samplers: {sp} not found")

    # the bundled model's own golden file (weights.safetensors -> golden.safetensors)
    if args.model and os.path.exists(os.path.join(args.model, "golden.safetensors")):
        from ditfa_tools.loading import load_dit

        fm, _, _ = load_dit(args.model)
        gd = load_file(os.path.join(args.model, "golden.safetensors"))
        with torch.no_grad():
            check("fashion-dit output.out", fm(gd["input.x"], gd["input.t"], gd["input.y"]), gd["output.out"])
            check("fashion-dit cfg.output.out",
                  fm.forward_with_cfg(gd["cfg.input.x"], gd["cfg.input.t"], gd["cfg.input.y"], 4.0),
                  gd["cfg.output.out"])
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
