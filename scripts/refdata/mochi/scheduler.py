"""Mochi's sampling schedule and loop arithmetic as diffusers' MochiPipeline runs them.

Writes tests/data/mochi/scheduler_refs.safetensors:
  steps{N}.sigmas / .timesteps   FlowMatchEulerDiscreteScheduler(shift=1, invert_sigmas=True)
                                  after set_timesteps(sigmas=linear_quadratic_schedule(N, 0.025)),
                                  for N in 2, 3, 8, 64;
  steps{N}.model_timesteps        what the transformer receives: t.expand(2).to(bfloat16);
  loop.*                          an 8-step bf16 loop with CFG 4.5 around a stand-in model whose
                                  branch outputs are bf16 functions of the latents: the initial
                                  latents (f32 noise cast to bf16) and the latents after each step.
"""
import pathlib
import sys

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[3]
out = root / "tests/data/mochi/scheduler_refs.safetensors"


def make_scheduler(n):
    s = FlowMatchEulerDiscreteScheduler(shift=1.0, invert_sigmas=True)
    s.set_timesteps(sigmas=np.array(linear_quadratic_schedule(n, 0.025)), device="cpu")
    s.set_begin_index(0)
    return s


refs = {}
for n in (2, 3, 8, 64):
    s = make_scheduler(n)
    refs[f"steps{n}.sigmas"] = s.sigmas.clone()
    refs[f"steps{n}.timesteps"] = s.timesteps.clone()
    refs[f"steps{n}.model_timesteps"] = torch.stack([t.expand(2).to(torch.bfloat16) for t in s.timesteps])

# The denoising loop of MochiPipeline.__call__ with a stand-in transformer.
guidance = 4.5
s = make_scheduler(8)
latents = torch.randn(1, 12, 2, 4, 6, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
refs["loop.latents0"] = latents
steps = []
for t in s.timesteps:
    x = torch.cat([latents] * 2)
    timestep = t.expand(x.shape[0]).to(latents.dtype)
    scale = (timestep / 1000).view(-1, 1, 1, 1, 1)
    uncond, cond = (x * (1 - scale) + 0.25 * torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1, 1).to(x.dtype)).chunk(2)
    noise_pred = torch.cat([uncond, cond]).to(torch.float32)
    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
    noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
    latents = s.step(noise_pred, t, latents.to(torch.float32), return_dict=False)[0].to(torch.bfloat16)
    steps.append(latents)
refs["loop.latents"] = torch.stack(steps)

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()}, file=sys.stderr)
