"""Reference tables and steps of CogVideoXDDIMScheduler and CogVideoXDPMScheduler with the
released configurations (v-prediction, zero-SNR rescale, trailing spacing; snr_shift_scale 3.0
for 2b, 1.0 for 5b). DDIM steps in float32 and with a bfloat16 sample and float32 model output,
as the pipeline calls it; a 4-step DPM run with a seeded CPU generator. Writes
tests/data/cogvideox/schedulers.safetensors."""
import pathlib

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[2]
config = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
              prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
              clip_sample=False, timestep_spacing="trailing", steps_offset=0)
out = {}
for name, shift in (("2b", 3.0), ("5b", 1.0)):
    ddim = CogVideoXDDIMScheduler(snr_shift_scale=shift, **config)
    out[f"{name}.alphas_cumprod"] = ddim.alphas_cumprod.clone()
    for n in (1, 3, 7, 50):
        ddim.set_timesteps(n)
        out[f"{name}.steps{n}.timesteps"] = ddim.timesteps.clone()
    # DDIM: 3 steps of a 3-step schedule (the last one lands on x0).
    gen = torch.Generator().manual_seed(1)
    ddim.set_timesteps(3)
    sample = torch.randn(1, 2, 4, 3, 5, generator=gen)
    for i, t in enumerate(ddim.timesteps):
        v = torch.randn(sample.shape, generator=gen)
        out[f"{name}.ddim.step{i}.sample"] = sample
        out[f"{name}.ddim.step{i}.model_output"] = v
        out[f"{name}.ddim.step{i}.prev_f32"] = ddim.step(v, t, sample, return_dict=False)[0]
        s16 = sample.to(torch.bfloat16)
        out[f"{name}.ddim.step{i}.prev_bf16_sample"] = ddim.step(v, t, s16, return_dict=False)[0]
        sample = out[f"{name}.ddim.step{i}.prev_f32"]
    # DPM: a 4-step run as the pipeline drives it, noise from a CPU generator seeded 5.
    dpm = CogVideoXDPMScheduler(snr_shift_scale=shift, **config)
    dpm.set_timesteps(4)
    sample = torch.randn(1, 2, 4, 3, 5, generator=torch.Generator().manual_seed(2))
    out[f"{name}.dpm.sample0"] = sample
    noise_gen = torch.Generator().manual_seed(5)
    old = None
    for i, t in enumerate(dpm.timesteps):
        v = torch.sin(sample * (i + 1)) + 0.1 * i
        sample, old = dpm.step(v, old, t, dpm.timesteps[i - 1] if i > 0 else None, sample,
                               generator=noise_gen, return_dict=False)
        out[f"{name}.dpm.step{i}.model_output"] = v
        out[f"{name}.dpm.step{i}.prev"] = sample
save_file({k: v.clone().contiguous() for k, v in out.items()},
          str(root / "tests" / "data" / "cogvideox" / "schedulers.safetensors"))
