"""Reference decode of diffusers' AutoencoderKLWan (the shared vae_wan fixture checkpoint) with
spatial tiling on small tiles, and the bf16 decode of the fixture latents.

Writes tests/data/wan/vae_refs.safetensors:
  tiled.latents / tiled.frames   enable_tiling(64, 64, 48, 48) on [1, 4, 2, 10, 12] latents
  bf16.frames                    the fixture's input.latents decoded by the bf16 model
"""
import pathlib

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixture = root.parent / "shared/fixtures/diffusers/vae_wan"
out = root / "tests/data/wan/vae_refs.safetensors"

refs = {}
with torch.no_grad():
    vae = AutoencoderKLWan.from_pretrained(str(fixture / "model"), torch_dtype=torch.float32)
    vae.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64,
                      tile_sample_stride_height=48, tile_sample_stride_width=48)
    z = torch.randn(1, 4, 2, 10, 12, generator=torch.Generator().manual_seed(3))
    refs["tiled.latents"] = z
    refs["tiled.frames"] = vae.decode(z).sample

    vae = AutoencoderKLWan.from_pretrained(str(fixture / "model"), torch_dtype=torch.bfloat16)
    io = load_file(str(fixture / "io.safetensors"))
    refs["bf16.frames"] = vae.decode(io["input.latents"].to(torch.bfloat16)).sample

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()})
