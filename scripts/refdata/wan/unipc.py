"""Reference tables and steps of diffusers' UniPCMultistepScheduler as the Wan2.1 *-Diffusers
repos configure it (flow_prediction, use_flow_sigmas, solver_order 2, bh2, lower_order_final,
final_sigmas_type zero).

Writes tests/data/wan/unipc.safetensors:
  shift{S}.steps{N}.sigmas / .timesteps      for S in {3, 5}, N in {1, 2, 10, 30, 50}
  run.steps{N}.{sample,model_output.{i},prev_sample.{i}}  a whole N-step run on a small f32
      sample with bf16 model outputs (as the Wan pipeline feeds it: the CFG mix is bf16), N in {1, 4, 7}
"""
import pathlib

import torch
from diffusers import UniPCMultistepScheduler
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[3]
out = root / "tests/data/wan/unipc.safetensors"


def scheduler(shift):
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=2,
        solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="linspace", num_train_timesteps=1000)


refs = {}
for shift in (3, 5):
    for n in (1, 2, 10, 30, 50):
        s = scheduler(float(shift))
        s.set_timesteps(n)
        refs[f"shift{shift}.steps{n}.sigmas"] = s.sigmas.clone()
        refs[f"shift{shift}.steps{n}.timesteps"] = s.timesteps.clone()

g = torch.Generator().manual_seed(7)
for n in (1, 4, 7):
    s = scheduler(3.0)
    s.set_timesteps(n)
    sample = torch.randn(1, 4, 2, 3, 5, generator=g)
    refs[f"run.steps{n}.sample"] = sample.clone()
    for i, t in enumerate(s.timesteps):
        # a flow-like velocity (noise - x0) plus noise, in bf16
        v = (torch.randn(sample.shape, generator=g) - 0.3 * sample).to(torch.bfloat16)
        refs[f"run.steps{n}.model_output.{i}"] = v.clone()
        sample = s.step(v, t, sample, return_dict=False)[0]
        refs[f"run.steps{n}.prev_sample.{i}"] = sample.clone()

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, len(refs), "tensors")
