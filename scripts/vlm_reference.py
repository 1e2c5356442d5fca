#!/usr/bin/python3
"""Writes the vlm-tiny reference case for `hp check`: config, initial weights and a batch of
images and captions in safetensors, then 5 AdamW steps of the model computed in PyTorch float64
(losses, step-0 gradients, final weights), laid out like ../shared/reference/<case>/.

The model, written out here independently of the C++ code: a ViT encoder over 4x4 patches of
16x16 RGB images (patch embedding as a linear over patches flattened channel-major, learned
positions, pre-norm blocks with bidirectional attention and a tanh-gelu MLP, a final layer norm),
a projector (linear, gelu, linear) into the decoder's width, then a Llama decoder over the image
tokens followed by the caption tokens; cross-entropy on the caption only (HF LLaVA's labels:
-100 on the image, the last image token predicts the first caption token).

Usage: /usr/bin/python3 scripts/vlm_reference.py OUT_DIR   (needs python3-torch)
Not a trainer: one fixed batch, every step on it, as hp check replays it.
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)

CONFIG = {
    "model_type": "vlm",
    "projector_hidden_act": "gelu_pytorch_tanh",
    "vision_config": {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                      "num_attention_heads": 4, "image_size": 16, "patch_size": 4,
                      "num_channels": 3, "layer_norm_eps": 1e-5,
                      "hidden_act": "gelu_pytorch_tanh"},
    "text_config": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
                    "intermediate_size": 172, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "max_position_embeddings": 64, "vocab_size": 256, "rms_norm_eps": 1e-6,
                    "rope_theta": 10000.0, "tie_word_embeddings": False},
}
OPT = {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
       "decay": "params with 2 or more dims"}
STEPS, BATCH, CAPTION, SEED = 5, 2, 16, 1234

V, T = CONFIG["vision_config"], CONFIG["text_config"]
DV, FV, HV = V["hidden_size"], V["intermediate_size"], V["num_attention_heads"]
S, P, C = V["image_size"], V["patch_size"], V["num_channels"]
G = S // P
N = G * G
D, F, H, HKV = T["hidden_size"], T["intermediate_size"], T["num_attention_heads"], T["num_key_value_heads"]
DH = D // H
VOCAB = T["vocab_size"]
VIS = "vision_tower.vision_model."
LM = "language_model."


def param_specs():
    """(name, shape, kind) in the model's order; kind: w (normal 0.02), b (bias), n (norm)."""
    out = [(VIS + "embeddings.patch_embedding.weight", (DV, C * P * P), "w"),
           (VIS + "embeddings.patch_embedding.bias", (DV,), "b"),
           (VIS + "embeddings.position_embedding.weight", (N, DV), "w")]
    for i in range(V["num_hidden_layers"]):
        l = f"{VIS}encoder.layers.{i}."
        out += [(l + "layer_norm1.weight", (DV,), "n"), (l + "layer_norm1.bias", (DV,), "b")]
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):  # k_proj without a bias
            out += [(l + f"self_attn.{p}.weight", (DV, DV), "w")]
            out += [(l + f"self_attn.{p}.bias", (DV,), "b")] if p != "k_proj" else []
        out += [(l + "layer_norm2.weight", (DV,), "n"), (l + "layer_norm2.bias", (DV,), "b"),
                (l + "mlp.fc1.weight", (FV, DV), "w"), (l + "mlp.fc1.bias", (FV,), "b"),
                (l + "mlp.fc2.weight", (DV, FV), "w"), (l + "mlp.fc2.bias", (DV,), "b")]
    out += [(VIS + "post_layernorm.weight", (DV,), "n"), (VIS + "post_layernorm.bias", (DV,), "b"),
            ("multi_modal_projector.linear_1.weight", (D, DV), "w"),
            ("multi_modal_projector.linear_1.bias", (D,), "b"),
            ("multi_modal_projector.linear_2.weight", (D, D), "w"),
            ("multi_modal_projector.linear_2.bias", (D,), "b"),
            (LM + "model.embed_tokens.weight", (VOCAB, D), "w")]
    kv = HKV * DH
    for i in range(T["num_hidden_layers"]):
        l = f"{LM}model.layers.{i}."
        out += [(l + "input_layernorm.weight", (D,), "n"),
                (l + "self_attn.q_proj.weight", (H * DH, D), "w"),
                (l + "self_attn.k_proj.weight", (kv, D), "w"),
                (l + "self_attn.v_proj.weight", (kv, D), "w"),
                (l + "self_attn.o_proj.weight", (D, H * DH), "w"),
                (l + "post_attention_layernorm.weight", (D,), "n"),
                (l + "mlp.gate_proj.weight", (F, D), "w"),
                (l + "mlp.up_proj.weight", (F, D), "w"),
                (l + "mlp.down_proj.weight", (D, F), "w")]
    out += [(LM + "model.norm.weight", (D,), "n"), (LM + "lm_head.weight", (VOCAB, D), "w")]
    return out


def write_safetensors(path, tensors):
    """tensors: name -> torch tensor (float32 or int32), written in insertion order."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def gelu(x):  # the tanh approximation (gelu_pytorch_tanh)
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def linear(x, p, name):
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if name + ".bias" in p else y


def rope(x, positions):  # x [B, L, heads, DH], HF rotate_half
    half = DH // 2
    inv = 1.0 / T["rope_theta"] ** (torch.arange(0, half) * 2.0 / DH)
    ang = positions[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def loss_of(p, pixels, tokens):
    B = pixels.shape[0]
    x = pixels.reshape(B, C, G, P, G, P).permute(0, 2, 4, 1, 3, 5).reshape(B, N, C * P * P)
    x = linear(x, p, VIS + "embeddings.patch_embedding") + p[VIS + "embeddings.position_embedding.weight"]
    dh = DV // HV
    for i in range(V["num_hidden_layers"]):
        l = f"{VIS}encoder.layers.{i}."
        h = layer_norm(x, p[l + "layer_norm1.weight"], p[l + "layer_norm1.bias"], V["layer_norm_eps"])
        q, k, v = (linear(h, p, l + f"self_attn.{n}").reshape(B, N, HV, dh).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), -1) @ v  # bidirectional
        x = x + linear(a.transpose(1, 2).reshape(B, N, DV), p, l + "self_attn.out_proj")
        h = layer_norm(x, p[l + "layer_norm2.weight"], p[l + "layer_norm2.bias"], V["layer_norm_eps"])
        x = x + linear(gelu(linear(h, p, l + "mlp.fc1")), p, l + "mlp.fc2")
    x = layer_norm(x, p[VIS + "post_layernorm.weight"], p[VIS + "post_layernorm.bias"], V["layer_norm_eps"])
    img = linear(gelu(linear(x, p, "multi_modal_projector.linear_1")), p, "multi_modal_projector.linear_2")
    cap = tokens[:, :-1]
    x = torch.cat([img, p[LM + "model.embed_tokens.weight"][cap]], 1)
    L = x.shape[1]
    pos = torch.arange(L, dtype=torch.float64)
    mask = torch.full((L, L), float("-inf")).triu(1)
    for i in range(T["num_hidden_layers"]):
        l = f"{LM}model.layers.{i}."
        h = rms_norm(x, p[l + "input_layernorm.weight"], T["rms_norm_eps"])
        q = rope(linear(h, p, l + "self_attn.q_proj").reshape(B, L, H, DH), pos)
        k = rope(linear(h, p, l + "self_attn.k_proj").reshape(B, L, HKV, DH), pos)
        v = linear(h, p, l + "self_attn.v_proj").reshape(B, L, HKV, DH)
        k, v = (t.repeat_interleave(H // HKV, dim=2) for t in (k, v))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DH) + mask, -1) @ v
        x = x + linear(a.transpose(1, 2).reshape(B, L, H * DH), p, l + "self_attn.o_proj")
        h = rms_norm(x, p[l + "post_attention_layernorm.weight"], T["rms_norm_eps"])
        g = linear(h, p, l + "mlp.gate_proj")
        x = x + linear(torch.nn.functional.silu(g) * linear(h, p, l + "mlp.up_proj"), p,
                       l + "mlp.down_proj")
    logits = linear(rms_norm(x, p[LM + "model.norm.weight"], T["rms_norm_eps"]), p, LM + "lm_head")
    # Labels: -100 on the image, then the caption; logits at position j predict label j + 1.
    labels = torch.cat([torch.full((B, N), -100, dtype=torch.long), tokens], 1)[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1),
                                             ignore_index=-100)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)
    weights = {}
    for name, shape, kind in param_specs():
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        # Norms near 1 and biases near 0, perturbed so that their gradients are exercised too.
        weights[name] = {"w": 0.02 * r, "b": 0.02 * r, "n": 1 + 0.1 * r}[kind]
    levels = torch.randint(0, 256, (BATCH, C, S, S), generator=gen)
    pixel_values = (levels.to(torch.float64) / 255).to(torch.float32)
    tokens = torch.randint(0, VOCAB, (BATCH, CAPTION + 1), generator=gen, dtype=torch.int32)
    write_safetensors(os.path.join(out, "weights.safetensors"), weights)
    write_safetensors(os.path.join(out, "batch.safetensors"),
                      {"pixel_values": pixel_values, "tokens": tokens})

    params = {k: v.to(torch.float64).clone().requires_grad_(True) for k, v in weights.items()}
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=OPT["lr"], betas=tuple(OPT["betas"]), eps=OPT["eps"])
    pix, tok = pixel_values.to(torch.float64), tokens.to(torch.long)
    expected, losses = {}, []
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_of(params, pix, tok)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            for k, p in params.items():
                expected["grad/" + k] = p.grad.to(torch.float32)
        opt.step()
    expected = {"loss": torch.tensor(losses, dtype=torch.float32), **expected}
    for k, p in params.items():
        expected["final/" + k] = p.detach().to(torch.float32)
    write_safetensors(os.path.join(out, "expected.safetensors"), expected)
    case = {"model": CONFIG, "weights": "weights.safetensors", "batch": "batch.safetensors",
            "expected": "expected.safetensors", "steps": STEPS, "optimizer": OPT,
            "generator": "scripts/vlm_reference.py (PyTorch %s, float64)" % torch.__version__}
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
    print(json.dumps({"losses": losses}))


if __name__ == "__main__":
    main()
