"""Reference outputs of diffusers' WanTransformer3DModel beyond the shared fp32 fixture.

Writes tests/data/wan/transformer_refs.safetensors:
  bf16.*  the fixture checkpoint loaded with torch_dtype=bfloat16 (time_embedder, scale_shift_table
          and norm2 stay float32), bf16 inputs, the bf16 output;
  b2.*    fp32, a batch of two with different timesteps and texts (timestep as a float tensor).
"""
import pathlib
import sys

import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

root = pathlib.Path(__file__).resolve().parents[3]
fixture = root.parent / "shared/fixtures/diffusers/wan"
out = root / "tests/data/wan/transformer_refs.safetensors"

io = load_file(str(fixture / "io.safetensors"))
refs = {}
with torch.no_grad():
    model = WanTransformer3DModel.from_pretrained(str(fixture / "model"), torch_dtype=torch.bfloat16)
    assert model.blocks[0].scale_shift_table.dtype == torch.float32
    hs = io["input.hidden_states"].to(torch.bfloat16)
    ehs = io["input.encoder_hidden_states"].to(torch.bfloat16)
    t = io["input.timestep"]
    refs["bf16.input.hidden_states"] = hs
    refs["bf16.input.encoder_hidden_states"] = ehs
    refs["bf16.input.timestep"] = t
    refs["bf16.output.sample"] = model(hs, t, ehs, return_dict=False)[0]

    model = WanTransformer3DModel.from_pretrained(str(fixture / "model"), torch_dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    hs = torch.randn(2, 4, 2, 6, 10, generator=g)
    ehs = torch.randn(2, 9, 24, generator=g)
    ehs[1, 4:] = 0  # zero-padded text, as the pipeline pads it
    t = torch.tensor([937.0, 250.0])
    refs["b2.input.hidden_states"] = hs
    refs["b2.input.encoder_hidden_states"] = ehs
    refs["b2.input.timestep"] = t
    refs["b2.output.sample"] = model(hs, t, ehs, return_dict=False)[0]

save_file({k: v.contiguous() for k, v in refs.items()}, str(out))
print(out, {k: tuple(v.shape) for k, v in refs.items()}, file=sys.stderr)
