"""Reference data for the FLUX.1 family tests (tests/data/flux/flux_refs.safetensors).

Runs diffusers (float32, CPU) on the tiny fixture models of ../shared/fixtures/diffusers:
  * vae_tiled.*: AutoencoderKL (vae_flux) tiled decode of latents larger than one tile;
  * pipe.*: FluxPipeline with the flux transformer and vae_flux VAE (its config given FLUX's
    scaling_factor 0.3611 and shift_factor 0.1159; tiling enabled, as ditbench's pipeline decodes,
    which tiles the 12 x 8 latents here since they exceed the VAE's 8-latent tile), 4 steps at 48x32, guidance 3.5,
    given prompt embeddings, a CPU generator seeded 0: scheduler tables, final packed latents and
    the output image;
  * dev1024.*: FLUX.1-dev's scheduler at 1024x1024, 28 steps (mu, timesteps, sigmas) and the bf16
    timestep the pipeline feeds the model (bf16(t) / 1000).
Usage: python scripts/refdata/flux_pipeline.py [FIXTURES_DIR] [OUT_FILE]
"""
import sys

import numpy as np

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from safetensors.torch import save_file

fixtures = sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures"
out_file = sys.argv[2] if len(sys.argv) > 2 else "tests/data/flux/flux_refs.safetensors"
out = {}

vae = AutoencoderKL.from_pretrained(f"{fixtures}/diffusers/vae_flux/model").eval()
vae.enable_tiling()
z = torch.randn(1, vae.config.latent_channels, 12, 14, generator=torch.Generator().manual_seed(5))
with torch.no_grad():
    out["vae_tiled.latents"] = z
    out["vae_tiled.frames"] = vae.decode(z).sample
# FluxPipeline needs FLUX's latent shift; the fixture VAE's config has none (null).
vae.register_to_config(scaling_factor=0.3611, shift_factor=0.1159)

transformer = FluxTransformer2DModel.from_pretrained(f"{fixtures}/diffusers/flux/model").eval()
scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                            max_shift=1.15, base_image_seq_len=256,
                                            max_image_seq_len=4096)
pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                    text_encoder_2=None, tokenizer_2=None, transformer=transformer)
g = torch.Generator().manual_seed(11)
prompt_embeds = torch.randn(1, 7, transformer.config.joint_attention_dim, generator=g)
pooled = torch.randn(1, transformer.config.pooled_projection_dim, generator=g)
final = {}


def keep_latents(p, i, t, kwargs):
    final["latents"] = kwargs["latents"].clone()
    return kwargs


with torch.no_grad():
    image = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, height=48, width=32,
                 num_inference_steps=4, guidance_scale=3.5, generator=torch.Generator().manual_seed(0),
                 output_type="np", callback_on_step_end=keep_latents).images
out["pipe.prompt_embeds"] = prompt_embeds
out["pipe.pooled_prompt_embeds"] = pooled
out["pipe.timesteps"] = pipe.scheduler.timesteps.clone()
out["pipe.sigmas"] = pipe.scheduler.sigmas.clone()
out["pipe.latents"] = final["latents"]
out["pipe.image"] = torch.from_numpy(image).float()

sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
n_img = (1024 // 16) * (1024 // 16)
mu = calculate_shift(n_img, 256, 4096, 0.5, 1.15)
timesteps, _ = retrieve_timesteps(sched, 28, "cpu", sigmas=np.linspace(1.0, 1 / 28, 28), mu=mu)
out["dev1024.mu"] = torch.tensor([mu], dtype=torch.float64)
out["dev1024.timesteps"] = timesteps.clone()
out["dev1024.sigmas"] = sched.sigmas.clone()
out["dev1024.model_timestep"] = (timesteps.to(torch.bfloat16) / 1000).float()

save_file({k: v.contiguous() for k, v in out.items()}, out_file)
print({k: tuple(v.shape) for k, v in out.items()})
