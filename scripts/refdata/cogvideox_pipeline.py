"""Reference generations of diffusers' CogVideoXPipeline with the fixture transformer (2b style)
and VAE: 3 steps at 64x64 with 9 frames, CFG 6, given prompt embeddings, the initial latents
from a CPU generator seeded 0; once with CogVideoXDDIMScheduler and once with
CogVideoXDPMScheduler (whose step noise comes from the same generator). Writes
tests/data/cogvideox/pipeline.safetensors."""
import pathlib

import torch
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler,
                       CogVideoXPipeline, CogVideoXTransformer3DModel)
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[2]
fixtures = root.parent / "shared" / "fixtures" / "diffusers"
transformer = CogVideoXTransformer3DModel.from_pretrained(fixtures / "cogvideox" / "model")
vae = AutoencoderKLCogVideoX.from_pretrained(fixtures / "vae_cogvideox" / "model")
config = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
              prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
              clip_sample=False, timestep_spacing="trailing", snr_shift_scale=3.0)
gen = torch.Generator().manual_seed(11)
out = {"prompt_embeds": torch.randn(1, 7, 24, generator=gen),
       "negative_prompt_embeds": torch.randn(1, 7, 24, generator=gen)}
for name, scheduler in (("ddim", CogVideoXDDIMScheduler(**config)),
                        ("dpm", CogVideoXDPMScheduler(**config))):
    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    captured = {}

    def keep_latents(pipeline, step, timestep, kwargs):
        captured["latents"] = kwargs["latents"].clone()
        return {}

    with torch.no_grad():
        frames = pipe(prompt_embeds=out["prompt_embeds"],
                      negative_prompt_embeds=out["negative_prompt_embeds"], height=64, width=64,
                      num_frames=9, num_inference_steps=3, guidance_scale=6.0,
                      generator=torch.Generator().manual_seed(0), output_type="np",
                      callback_on_step_end=keep_latents).frames
    out[f"{name}.latents"] = captured["latents"]
    out[f"{name}.frames"] = torch.from_numpy(frames[0]).float()
save_file({k: v.clone().contiguous() for k, v in out.items()},
          str(root / "tests" / "data" / "cogvideox" / "pipeline.safetensors"))
