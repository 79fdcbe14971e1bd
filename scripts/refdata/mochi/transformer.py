"""Reference outputs of diffusers' MochiTransformer3DModel beyond the shared fp32 fixture.

Writes tests/data/mochi/transformer_refs.safetensors:
  bf16.*  the fixture checkpoint loaded with torch_dtype=bfloat16, bf16 inputs and a bf16
          timestep (as the pipeline rounds t.to(latents.dtype)), the bf16 output;
  b2.*    fp32, a batch of two with different timesteps and different text masks (the second
          sample keeps 2 of 7 tokens), so each sample drops its own padded text.
"""
import pathlib
import sys

import torch
from diffusers import MochiTransformer3DModel
from safetensors.torch import load_file, save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixture = root.parent / "shared/fixtures/diffusers/mochi"
out = root / "tests/data/mochi/transformer_refs.safetensors"

io = load_file(str(fixture / "io.safetensors"))
refs = {}
with torch.no_grad():
    model = MochiTransformer3DModel.from_pretrained(str(fixture / "model"), torch_dtype=torch.bfloat16)
    hs = io["input.hidden_states"].to(torch.bfloat16)
    ehs = io["input.encoder_hidden_states"].to(torch.bfloat16)
    mask = io["input.encoder_attention_mask"]
    t = torch.tensor([0.7083]).expand(1).to(torch.bfloat16) * 1000  # a bf16 pipeline timestep
    refs["bf16.input.hidden_states"] = hs
    refs["bf16.input.encoder_hidden_states"] = ehs
    refs["bf16.input.encoder_attention_mask"] = mask
    refs["bf16.input.timestep"] = t
    refs["bf16.output.sample"] = model(hs, ehs, t, mask, return_dict=False)[0]

    model = MochiTransformer3DModel.from_pretrained(str(fixture / "model"), torch_dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    hs = torch.randn(2, 4, 2, 6, 4, generator=g)
    ehs = torch.randn(2, 7, 24, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    t = torch.tensor([37.0, 612.5])
    refs["b2.input.hidden_states"] = hs
    refs["b2.input.encoder_hidden_states"] = ehs
    refs["b2.input.encoder_attention_mask"] = mask
    refs["b2.input.timestep"] = t
    refs["b2.output.sample"] = model(hs, ehs, t, mask, return_dict=False)[0]

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()}, file=sys.stderr)
