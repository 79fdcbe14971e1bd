"""MochiPipeline end to end with the fixture transformer and VAE (fp32, CPU generator).

Writes tests/data/mochi/pipeline_refs.safetensors:
  prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask
      the text conditioning given to the pipeline (random, 5 and 1 valid tokens of 7);
  latents   the denoised latents (output_type="latent");
  frames    the decoded video (output_type="np"), [F, H, W, 3] in [0, 1].
Settings: 64 x 48 pixels, 13 frames, 3 steps, guidance 4.5, seed 0. The fixture VAE's
latents_mean/std are zeros/ones, so the pipeline's denormalisation is the identity; they are
unset here because the pipeline reshapes them to 12 channels.
"""
import pathlib
import sys

import numpy as np
import torch
from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixtures = root.parent / "shared/fixtures/diffusers"
out = root / "tests/data/mochi/pipeline_refs.safetensors"

transformer = MochiTransformer3DModel.from_pretrained(str(fixtures / "mochi/model"))
vae = AutoencoderKLMochi.from_pretrained(str(fixtures / "vae_mochi/model"))
vae.register_to_config(latents_mean=None, latents_std=None)
scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, invert_sigmas=True)
pipe = MochiPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer)

g = torch.Generator().manual_seed(11)
refs = {
    "prompt_embeds": torch.randn(1, 7, 24, generator=g),
    "prompt_attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0, 0]], dtype=torch.bool),
    "negative_prompt_embeds": torch.randn(1, 7, 24, generator=g),
    "negative_prompt_attention_mask": torch.tensor([[1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool),
}
refs["prompt_embeds"][:, 5:] = 0
refs["negative_prompt_embeds"][:, 1:] = 0
args = dict(height=64, width=48, num_frames=13, num_inference_steps=3, guidance_scale=4.5, **refs)
with torch.no_grad():
    refs["latents"] = pipe(generator=torch.Generator().manual_seed(0), output_type="latent", **args).frames
    frames = pipe(generator=torch.Generator().manual_seed(0), output_type="np", **args).frames[0]
refs["frames"] = torch.from_numpy(np.ascontiguousarray(frames))
save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()}, file=sys.stderr)
