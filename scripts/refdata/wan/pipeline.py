"""End-to-end reference of diffusers' WanPipeline on the shared fixture checkpoints (transformer
`wan`, VAE `vae_wan`) with the Wan-AI UniPC scheduler config: given prompt / negative prompt
embeddings and initial noise, 3 steps at guidance 5.0, frames as numpy floats.

Writes tests/data/wan/pipeline_ref.safetensors: prompt_embeds, negative_prompt_embeds (zero-padded
past their lengths), noise, frames [F, H, W, 3], and latents (after the last step).
"""
import pathlib

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixtures = root.parent / "shared/fixtures/diffusers"
out = root / "tests/data/wan/pipeline_ref.safetensors"

transformer = WanTransformer3DModel.from_pretrained(str(fixtures / "wan/model"))
vae = AutoencoderKLWan.from_pretrained(str(fixtures / "vae_wan/model"))
scheduler = UniPCMultistepScheduler(
    prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, solver_order=2,
    solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
    timestep_spacing="linspace", num_train_timesteps=1000)
pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=transformer, vae=vae,
                   scheduler=scheduler)

g = torch.Generator().manual_seed(11)
prompt = torch.randn(1, 12, 24, generator=g)
prompt[:, 9:] = 0
negative = torch.randn(1, 12, 24, generator=g)
negative[:, 1:] = 0
noise = torch.randn(1, 4, 3, 4, 4, generator=g)

latents = {}
def keep(p, i, t, kw):
    latents["last"] = kw["latents"]
    return {}

with torch.no_grad():
    frames = pipe(prompt_embeds=prompt, negative_prompt_embeds=negative, latents=noise.clone(),
                  height=32, width=32, num_frames=9, num_inference_steps=3, guidance_scale=5.0,
                  output_type="np", callback_on_step_end=keep).frames[0]
refs = {"prompt_embeds": prompt, "negative_prompt_embeds": negative, "noise": noise,
        "frames": torch.from_numpy(frames).float(), "latents": latents["last"]}
save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()})
