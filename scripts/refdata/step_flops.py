"""FLOP counts of one transformer forward call (bench/step-flops.json, tests/data/flops/tiny.json).

Each diffusers transformer is built from its config on the meta device in bfloat16 (no weights,
no compute) and called once under torch.utils.flop_counter.FlopCounterMode with inputs of the
shapes ditbench's pipeline feeds it for a suite: latents after the VAE's compression, the suite's
text token count, batch 1 per call (ditbench runs CFG as two calls of one sample: CogVideoX and
Mochi split the [uncond; cond] batch, Wan runs cond then uncond), guidance for FLUX-dev and
HunyuanVideo.

Counting: matmul = mm/addmm/bmm/baddbmm (linear layers, and the few einsums of RoPE tables);
attention = the _scaled_dot_product_* ops. On the meta device F.scaled_dot_product_attention
falls back to its math path (bmm + softmax), so it is routed to the fused ops here: the flash op
without a mask, the efficient op with the mask as an additive bias; both count 4*B*H*Lq*Lk*Dh,
masked keys included. other = everything else counted (the patch-embedding convolutions).

Text masks:
  * HunyuanVideo masks padded text keys. flops_attention_valid_keys counts each masked call with
    its L - valid padded keys removed (queries unchanged; batch 1 and right padding make the keys
    a valid query sees exactly the first Lk - (L - valid), in the joint attention and in the
    token refiner's L x L mask). ditbench drops the padded text from the joint sequence
    (queries, keys and every block's text rows) after the token refiner, so "ditbench" is a
    second forward with `valid` text tokens, whose token-refiner counts are replaced by those
    of the first forward (ditbench's refiner still runs on all L tokens).
  * Mochi: diffusers keeps only each sample's valid text tokens in the joint attention (its
    per-sample torch.nonzero, answered here with the first `valid` indices since the meta device
    has no values). ditbench attends over all N + L tokens with a key mask: "ditbench" is the
    same forward with all L tokens kept.
  * FLUX, CogVideoX and Wan have no text mask: padded tokens are attended to (zero-padded
    embeddings for Wan), in diffusers and in ditbench alike.
Cases: the GPU step suites (bench/step-flops.json); the tiny presets at the shapes of the
suites/models-cpu.json suites, and assets/tiny-shapes at suites/smoke.json's (tiny.json).
Per entry: flops_total/matmul/attention/other and flops_by_op of one call of batch 1;
flops_step = the calls of one denoising step together (both CFG branches); "ditbench" = the
same where ditbench's forward differs from diffusers'.
Usage: python scripts/refdata/step_flops.py  (writes both files, from the repository root)
"""
import contextlib
import json
import os
from collections import defaultdict

import torch
import torch.nn.functional as F
from diffusers import (CogVideoXTransformer3DModel, FluxTransformer2DModel,
                       HunyuanVideoTransformer3DModel, MochiTransformer3DModel,
                       WanTransformer3DModel)
from torch.utils.flop_counter import FlopCounterMode

BF16 = torch.bfloat16
MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "linear", "matmul"}

# Released configs (specs/models.md) and ditbench's tiny presets (models/*/config.cpp).
HV = {}  # the class defaults are the released config
HV_TINY = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
               num_layers=2, num_single_layers=2, num_refiner_layers=1, text_embed_dim=32,
               pooled_projection_dim=16, rope_axes_dim=(4, 6, 6))
HV_TINY_SHAPES = dict(in_channels=8, out_channels=8, num_attention_heads=4, attention_head_dim=32,
                      num_layers=2, num_single_layers=4, num_refiner_layers=1, text_embed_dim=32,
                      pooled_projection_dim=16, rope_axes_dim=(8, 12, 12))  # assets/tiny-shapes
FLUX_DEV = dict(guidance_embeds=True)
FLUX_TINY = dict(in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12,
                 axes_dims_rope=(4, 6, 6), guidance_embeds=True)
COG_5B = dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True)
COG_TINY = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
                num_layers=2, time_embed_dim=8, text_embed_dim=24, max_text_seq_length=7,
                sample_width=8, sample_height=8, sample_frames=9)
MOCHI = {}
MOCHI_TINY = dict(num_attention_heads=2, attention_head_dim=16, num_layers=2,
                  pooled_projection_dim=16, text_embed_dim=32, time_embed_dim=32,
                  max_sequence_length=16)
WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16,
               out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
               cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
WAN_1_3B = dict(WAN_14B, num_attention_heads=12, ffn_dim=8960, num_layers=30)
WAN_TINY = dict(WAN_14B, num_attention_heads=2, attention_head_dim=16, in_channels=4,
                out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2)

_sdpa_calls = []  # (B, H, Lq, Lk, Dh, masked) of each attention call in the counted forward


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    q, k, v = query, key, value
    _sdpa_calls.append((q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3],
                        attn_mask is not None))
    if attn_mask is None:
        return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, is_causal,
                                                                  scale=scale)[0]
    bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device)
    bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, False, 0.0, is_causal, scale=scale)[0]


@contextlib.contextmanager
def patched(nonzero_count=None):
    """Fused SDPA; torch.nonzero of a meta tensor answered with the first indices; autocast
    on the meta device (Mochi's RoPE table asks for it) a no-op."""
    sdpa, nonzero, autocast = F.scaled_dot_product_attention, torch.nonzero, torch.autocast

    def meta_nonzero(x, *args, **kwargs):
        if x.device.type != "meta":
            return nonzero(x, *args, **kwargs)
        return torch.arange(nonzero_count, device=x.device).unsqueeze(1)

    def meta_autocast(device_type, *args, **kwargs):
        if device_type == "meta":
            return contextlib.nullcontext()
        return autocast(device_type, *args, **kwargs)

    F.scaled_dot_product_attention, torch.autocast = _fused_sdpa, meta_autocast
    if nonzero_count is not None:
        torch.nonzero = meta_nonzero
    try:
        yield
    finally:
        F.scaled_dot_product_attention, torch.nonzero, torch.autocast = sdpa, nonzero, autocast


def count(cls, config, inputs, nonzero_count=None):
    """One forward on the meta device: totals by kind, by op, and per top-level module."""
    with torch.device("meta"):
        model = cls(**config).to(BF16).eval()
        args = {k: v() if callable(v) else v for k, v in inputs.items()}
    _sdpa_calls.clear()
    counter = FlopCounterMode(display=False)
    with patched(nonzero_count), counter, torch.no_grad():
        model(**args, return_dict=False)
    counts = counter.get_flop_counts()
    by_op = defaultdict(int)
    for op, n in counts["Global"].items():
        by_op[str(op).split(".")[1]] += n
    # Per submodule (inclusive counts), keyed by its name in the model: (total, attention).
    root = type(model).__name__ + "."
    modules = {k[len(root):]: (sum(v.values()),
                               sum(n for op, n in v.items() if "scaled_dot_product" in str(op)))
               for k, v in counts.items() if k.startswith(root)}
    kinds = defaultdict(int)
    for op, n in by_op.items():
        kinds["attention" if op.startswith("_scaled_dot_product") else
              "matmul" if op in MATMUL_OPS else "other"] += n
    shapes = {k: list(v.shape) for k, v in args.items() if isinstance(v, torch.Tensor)}
    if "image_rotary_emb" in args:
        shapes["image_rotary_emb"] = [list(t.shape) for t in args["image_rotary_emb"]]
    return dict(total=sum(by_op.values()), matmul=kinds["matmul"], attention=kinds["attention"],
                other=kinds["other"], by_op=dict(sorted(by_op.items())), modules=modules,
                sdpa=list(_sdpa_calls), shapes=shapes)


def t(*shape, dtype=BF16):
    return lambda: torch.zeros(shape, dtype=dtype)


def hv_inputs(c, frames, height, width, tokens):
    return dict(hidden_states=t(1, c.get("in_channels", 16), (frames - 1) // 4 + 1, height // 8,
                                width // 8),
                timestep=t(1), encoder_hidden_states=t(1, tokens, c.get("text_embed_dim", 4096)),
                encoder_attention_mask=t(1, tokens, dtype=torch.bool),
                pooled_projections=t(1, c.get("pooled_projection_dim", 768)), guidance=t(1))


def hunyuan_video(c, frames, height, width, tokens, valid):
    full = count(HunyuanVideoTransformer3DModel, c, hv_inputs(c, frames, height, width, tokens))
    pad = tokens - valid
    full["attention_valid_keys"] = sum(4 * b * h * lq * (lk - pad if m else lk) * d
                                       for b, h, lq, lk, d, m in full["sdpa"])
    if pad:
        dropped = count(HunyuanVideoTransformer3DModel, c,
                        hv_inputs(c, frames, height, width, valid))
        (ref_full, ref_full_attn) = full["modules"]["context_embedder"]  # the token refiner
        (ref_dropped, ref_dropped_attn) = dropped["modules"]["context_embedder"]
        full["ditbench"] = dict(total=dropped["total"] - ref_dropped + ref_full,
                                attention=dropped["attention"] - ref_dropped_attn + ref_full_attn)
        full["ditbench"]["matmul"] = (full["ditbench"]["total"] - full["ditbench"]["attention"] -
                                      dropped["other"])
    return full


def flux(c, height, width, tokens):
    n = (height // 16) * (width // 16)
    return count(FluxTransformer2DModel, c, dict(
        hidden_states=t(1, n, c.get("in_channels", 64)),
        encoder_hidden_states=t(1, tokens, c.get("joint_attention_dim", 4096)),
        pooled_projections=t(1, c.get("pooled_projection_dim", 768)), timestep=t(1),
        img_ids=t(n, 3), txt_ids=t(tokens, 3), guidance=t(1, dtype=torch.float32)))


def cogvideox(c, frames, height, width):
    f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    inputs = dict(hidden_states=t(1, f, c.get("in_channels", 16), h, w),
                  encoder_hidden_states=t(1, c.get("max_text_seq_length", 226),
                                          c.get("text_embed_dim", 4096)),
                  timestep=t(1, dtype=torch.int64))
    if c.get("use_rotary_positional_embeddings"):
        n, dh = f * (h // 2) * (w // 2), c.get("attention_head_dim", 64)
        inputs["image_rotary_emb"] = lambda: (torch.zeros(n, dh), torch.zeros(n, dh))
    return count(CogVideoXTransformer3DModel, c, inputs)


def mochi(c, frames, height, width, tokens, valid):
    inputs = dict(hidden_states=t(1, c.get("in_channels", 12), (frames - 1) // 6 + 1, height // 8,
                                  width // 8),
                  encoder_hidden_states=t(1, tokens, c.get("text_embed_dim", 4096)),
                  encoder_attention_mask=t(1, tokens, dtype=torch.bool), timestep=t(1))
    out = count(MochiTransformer3DModel, c, inputs, nonzero_count=valid)
    if valid != tokens:
        kept = count(MochiTransformer3DModel, c, inputs, nonzero_count=tokens)
        out["ditbench"] = {k: kept[k] for k in ("total", "matmul", "attention")}
    return out


def wan(c, frames, height, width, tokens):
    return count(WanTransformer3DModel, c, dict(
        hidden_states=t(1, c["in_channels"], (frames - 1) // 4 + 1, height // 8, width // 8),
        timestep=t(1, dtype=torch.int64),
        encoder_hidden_states=t(1, tokens, c["text_dim"])))


def entry(name, model, preset, r, calls, notes, valid_keys=False):
    e = dict(suite=name, model=model, preset=preset, inputs=r["shapes"], batch=1,
             calls_per_step=calls, flops_step=calls * r["total"], flops_total=r["total"],
             flops_matmul=r["matmul"], flops_attention=r["attention"],
             flops_other=r["other"], flops_by_op=r["by_op"])
    if valid_keys:
        e["flops_attention_valid_keys"] = r["attention_valid_keys"]
    if "ditbench" in r:
        e["ditbench"] = {"flops_" + k: v for k, v in r["ditbench"].items()}
        e["ditbench"]["flops_step"] = calls * r["ditbench"]["total"]
    e["notes"] = notes
    return e


HV_NOTE = ("no CFG (embedded guidance); text key mask over [image, text] and the refiner's LxL "
           "mask; {valid}/{tokens} valid text tokens")
MOCHI_NOTE = ("CFG {g}: two calls of batch 1 per step, uncond (1 valid token, the empty prompt's "
              "EOS) and cond ({valid}/{tokens} valid); diffusers attends over N + valid tokens, "
              "ditbench over N + L with a key mask")
COG_NOTE = "CFG {g}: two calls of batch 1 per step ([uncond; cond] split); no text mask"
WAN_NOTE = ("CFG {g}: two calls of batch 1 per step (cond, uncond); cross-attention over all "
            "{tokens} zero-padded text tokens ({valid} real), no mask, as ditbench")
FLUX_NOTE = "no CFG (embedded guidance {g}); {tokens} text tokens, no mask"


def mochi_entries(name, preset, c, frames, height, width, tokens, valid, g):
    out = []
    for branch, v in (("cond", valid), ("uncond", 1)):
        e = entry(name, "mochi", preset, mochi(c, frames, height, width, tokens, v), 2,
                  MOCHI_NOTE.format(g=g, valid=valid, tokens=tokens))
        e["branch"], e["valid_text_tokens"] = branch, v
        out.append(e)
    for e in out:  # the step is one call of each branch
        e["flops_step"] = sum(b["flops_total"] for b in out)
    return out


def gpu_cases():
    out = []
    for name, frames, height, width in (("gpu-hv-480p-step", 61, 480, 848),
                                        ("gpu-hv-720p-cp", 129, 720, 1280)):
        out.append(entry(name, "hunyuan-video", "hunyuan-video",
                         hunyuan_video(HV, frames, height, width, 256, 200), 1,
                         HV_NOTE.format(valid=200, tokens=256), valid_keys=True))
    out.append(entry("gpu-flux-step", "flux", "flux-dev", flux(FLUX_DEV, 1024, 1024, 512), 1,
                     FLUX_NOTE.format(g=3.5, tokens=512)))
    out.append(entry("gpu-cogvideox-step", "cogvideox", "cogvideox-5b",
                     cogvideox(COG_5B, 49, 480, 720), 2, COG_NOTE.format(g=6.0)))
    out += mochi_entries("gpu-mochi-step", "mochi-1-preview", MOCHI, 163, 480, 848, 256, 128, 4.5)
    for name, preset, c in (("gpu-wan-step", "wan2.1-t2v-14b", WAN_14B),
                            ("gpu-wan-1.3b-step", "wan2.1-t2v-1.3b", WAN_1_3B)):
        out.append(entry(name, "wan", preset, wan(c, 81, 480, 832, 512), 2,
                         WAN_NOTE.format(g=5.0, tokens=512, valid=100)))
    return out


def tiny_cases():
    out = [entry("hunyuan-video-tiny-cpu", "hunyuan-video", "hunyuan-video-tiny",
                 hunyuan_video(HV_TINY, 5, 64, 64, 16, 12), 1,
                 HV_NOTE.format(valid=12, tokens=16), valid_keys=True),
           entry("smoke", "hunyuan-video", "assets/tiny-shapes",
                 hunyuan_video(HV_TINY_SHAPES, 9, 128, 128, 8, 5), 1,
                 HV_NOTE.format(valid=5, tokens=8) + " (prompt_1.safetensors)", valid_keys=True),
           entry("flux-tiny-cpu", "flux", "flux-tiny", flux(FLUX_TINY, 64, 64, 16), 1,
                 FLUX_NOTE.format(g=3.5, tokens=16)),
           entry("cogvideox-tiny-cpu", "cogvideox", "cogvideox-tiny",
                 cogvideox(COG_TINY, 9, 32, 48), 2,
                 COG_NOTE.format(g=6.0) + "; 7 tokens (5 valid) all attended")]
    out += mochi_entries("mochi-tiny-cpu", "mochi-tiny", MOCHI_TINY, 7, 48, 48, 16, 10, 4.5)
    out.append(entry("wan-tiny-cpu", "wan", "wan-tiny", wan(WAN_TINY, 9, 64, 64, 16), 2,
                     WAN_NOTE.format(g=5.0, tokens=16, valid=10)))
    return out


def write(path, entries):
    with open(path, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")


if __name__ == "__main__":
    os.makedirs("tests/data/flops", exist_ok=True)
    write("tests/data/flops/tiny.json", tiny_cases())
    write("bench/step-flops.json", gpu_cases())
