"""Reference decodes of diffusers' AutoencoderKLMochi beyond the shared fp32 fixture.

Writes tests/data/mochi/vae_refs.safetensors:
  tiled.*  fp32, the fixture VAE with enable_tiling(24, 24, 16, 16) (latent tiles of 3 with
           stride 2, 8-pixel blends) on latents [1, 4, 2, 5, 6]: several blended tiles;
  bf16.*   the fixture VAE in bfloat16 on the fixture's latents (untiled).
"""
import pathlib
import sys

import torch
from diffusers import AutoencoderKLMochi
from safetensors.torch import load_file, save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixture = root.parent / "shared/fixtures/diffusers/vae_mochi"
out = root / "tests/data/mochi/vae_refs.safetensors"

io = load_file(str(fixture / "io.safetensors"))
refs = {}
with torch.no_grad():
    vae = AutoencoderKLMochi.from_pretrained(str(fixture / "model"), torch_dtype=torch.float32)
    vae.enable_tiling(24, 24, 16, 16)
    z = torch.randn(1, 4, 2, 5, 6, generator=torch.Generator().manual_seed(3))
    refs["tiled.input.latents"] = z
    refs["tiled.output.frames"] = vae.decode(z).sample

    vae = AutoencoderKLMochi.from_pretrained(str(fixture / "model"), torch_dtype=torch.bfloat16)
    z = io["input.latents"].to(torch.bfloat16)
    refs["bf16.input.latents"] = z
    refs["bf16.output.frames"] = vae.decode(z).sample

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()}, file=sys.stderr)
