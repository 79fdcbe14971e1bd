"""Reference decodes of the CogVideoX VAE fixture (AutoencoderKLCogVideoX) beyond the fixture's
single frame batch: several latent-frame batches with the causal-conv caches carried between
them, and a spatially tiled decode. Writes tests/data/cogvideox/vae_decode.safetensors."""
import pathlib

import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import save_file

root = pathlib.Path(__file__).resolve().parents[2]
fixture = root.parent / "shared" / "fixtures" / "diffusers" / "vae_cogvideox" / "model"
vae = AutoencoderKLCogVideoX.from_pretrained(fixture, torch_dtype=torch.float32).eval()
gen = torch.Generator().manual_seed(7)
out = {}
with torch.no_grad():
    # 5 latent frames: batches [0, 3) and [3, 5), output 9 + 8 frames.
    z = torch.randn(1, 4, 5, 4, 4, generator=gen)
    out["batched.latents"] = z
    out["batched.frames"] = vae.decode(z).sample
    # 4 latent frames (two even batches) over 8 x 7 latents in 48 x 40 pixel tiles.
    z = torch.randn(1, 4, 4, 8, 7, generator=gen)
    vae.enable_tiling(tile_sample_min_height=48, tile_sample_min_width=40)
    out["tiled.latents"] = z
    out["tiled.frames"] = vae.decode(z).sample
save_file({k: v.clone().contiguous() for k, v in out.items()},
          str(root / "tests" / "data" / "cogvideox" / "vae_decode.safetensors"))
