#!/usr/bin/python3
"""Writes a reference case for `hp check` of a GPT-2 or Llama config: the config, initial weights
and a batch of tokens in safetensors, then 5 AdamW steps computed in PyTorch float64 (losses,
step-0 gradients, final weights), laid out like ../shared/reference/<case>/.

The models are written out here independently of the C++ code, with Hugging Face's names:
GPT-2 (learned positions, pre-norm blocks, Conv1D weights [in, out], tanh gelu, the head tied to
wte) and Llama (RMSNorm, rotary positions in HF's rotate-half layout, grouped key/value heads,
SwiGLU, the head tied to embed_tokens when tie_word_embeddings is true).

Usage: /usr/bin/python3 scripts/reference_case.py CONFIG.json BATCH SEQ SEED OUT_DIR
       /usr/bin/python3 scripts/reference_case.py --check CASE_DIR...
(needs python3-torch: scripts/setup.sh --bench). Not a trainer: one fixed batch, every step on
it, as hp check replays it. --check replays existing cases (GPT-2 or Llama, from their weights
and batch) and prints how far these models are from their expected losses, step-0 gradients and
final weights.
"""
import json
import math
import os
import sys

import torch

from vlm_reference import gelu, layer_norm, rms_norm, write_safetensors

torch.set_default_dtype(torch.float64)

STEPS = 5
OPT = {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
       "decay": "params with 2 or more dims"}


def param_specs(cfg):
    """(name, shape, kind) in the model's order; kind: w (normal 0.02), b (bias), n (norm)."""
    if cfg["model_type"] == "gpt2":
        D, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
        out = [("wte.weight", (V, D), "w"), ("wpe.weight", (P, D), "w")]
        for i in range(cfg["n_layer"]):
            l = f"h.{i}."
            for name, shape, kind in [("ln_1.weight", (D,), "n"), ("ln_1.bias", (D,), "b"),
                                      ("attn.c_attn.weight", (D, 3 * D), "w"),
                                      ("attn.c_attn.bias", (3 * D,), "b"),
                                      ("attn.c_proj.weight", (D, D), "w"),
                                      ("attn.c_proj.bias", (D,), "b"),
                                      ("ln_2.weight", (D,), "n"), ("ln_2.bias", (D,), "b"),
                                      ("mlp.c_fc.weight", (D, 4 * D), "w"),
                                      ("mlp.c_fc.bias", (4 * D,), "b"),
                                      ("mlp.c_proj.weight", (4 * D, D), "w"),
                                      ("mlp.c_proj.bias", (D,), "b")]:
                out.append((l + name, shape, kind))
        return out + [("ln_f.weight", (D,), "n"), ("ln_f.bias", (D,), "b")]
    D, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    DH = D // H
    out = [("model.embed_tokens.weight", (V, D), "w")]
    for i in range(cfg["num_hidden_layers"]):
        l = f"model.layers.{i}."
        out += [(l + "input_layernorm.weight", (D,), "n"),
                (l + "self_attn.q_proj.weight", (H * DH, D), "w"),
                (l + "self_attn.k_proj.weight", (KV * DH, D), "w"),
                (l + "self_attn.v_proj.weight", (KV * DH, D), "w"),
                (l + "self_attn.o_proj.weight", (D, H * DH), "w"),
                (l + "post_attention_layernorm.weight", (D,), "n"),
                (l + "mlp.gate_proj.weight", (F, D), "w"),
                (l + "mlp.up_proj.weight", (F, D), "w"),
                (l + "mlp.down_proj.weight", (D, F), "w")]
    out.append(("model.norm.weight", (D,), "n"))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, D), "w"))
    return out


def causal_attention(q, k, v):
    """q, k, v [B, heads, T, DH] -> [B, T, heads * DH]."""
    B, H, T, DH = q.shape
    mask = torch.full((T, T), float("-inf")).triu(1)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DH) + mask, -1) @ v
    return a.transpose(1, 2).reshape(B, T, H * DH)


def gpt2_logits(cfg, p, x_tok):
    B, T = x_tok.shape
    D, H = cfg["n_embd"], cfg["n_head"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    x = p["wte.weight"][x_tok] + p["wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        l = f"h.{i}."
        h = layer_norm(x, p[l + "ln_1.weight"], p[l + "ln_1.bias"], eps)
        qkv = h @ p[l + "attn.c_attn.weight"] + p[l + "attn.c_attn.bias"]
        q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in qkv.split(D, -1))
        x = x + causal_attention(q, k, v) @ p[l + "attn.c_proj.weight"] + p[l + "attn.c_proj.bias"]
        h = layer_norm(x, p[l + "ln_2.weight"], p[l + "ln_2.bias"], eps)
        h = gelu(h @ p[l + "mlp.c_fc.weight"] + p[l + "mlp.c_fc.bias"])
        x = x + h @ p[l + "mlp.c_proj.weight"] + p[l + "mlp.c_proj.bias"]
    return layer_norm(x, p["ln_f.weight"], p["ln_f.bias"], eps) @ p["wte.weight"].T


def llama_logits(cfg, p, x_tok):
    B, T = x_tok.shape
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    DH, eps, half = D // H, cfg["rms_norm_eps"], D // H // 2
    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, half) * 2.0 / DH)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]

    def rope(t):  # [B, T, heads, DH]
        return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

    x = p["model.embed_tokens.weight"][x_tok]
    for i in range(cfg["num_hidden_layers"]):
        l = f"model.layers.{i}."
        h = rms_norm(x, p[l + "input_layernorm.weight"], eps)
        q = rope((h @ p[l + "self_attn.q_proj.weight"].T).reshape(B, T, H, DH))
        k = rope((h @ p[l + "self_attn.k_proj.weight"].T).reshape(B, T, KV, DH))
        v = (h @ p[l + "self_attn.v_proj.weight"].T).reshape(B, T, KV, DH)
        k, v = (t.repeat_interleave(H // KV, dim=2) for t in (k, v))
        a = causal_attention(*(t.transpose(1, 2) for t in (q, k, v)))
        x = x + a @ p[l + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[l + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(h @ p[l + "mlp.gate_proj.weight"].T)
        x = x + (g * (h @ p[l + "mlp.up_proj.weight"].T)) @ p[l + "mlp.down_proj.weight"].T
    tied = cfg.get("tie_word_embeddings", False)
    head = p["model.embed_tokens.weight"] if tied else p["lm_head.weight"]
    return rms_norm(x, p["model.norm.weight"], eps) @ head.T


def loss_of(cfg, p, tokens):
    """Mean cross-entropy of tokens[:, 1:] given tokens[:, :-1]."""
    logits = (gpt2_logits if cfg["model_type"] == "gpt2" else llama_logits)(cfg, p, tokens[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             tokens[:, 1:].reshape(-1))


def read_safetensors(path):
    """name -> torch tensor (F32 or I32) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": torch.float32, "I32": torch.int32}[t["dtype"]]
        begin, end = t["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=dtype).reshape(t["shape"])
    return out


def train(cfg, weights, tokens):
    """STEPS AdamW steps in float64: the losses, step-0 gradients and final weights."""
    params = {k: v.to(torch.float64).clone().requires_grad_(True) for k, v in weights.items()}
    opt = torch.optim.AdamW(
        [{"params": [p for p in params.values() if p.dim() >= 2],
          "weight_decay": OPT["weight_decay"]},
         {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}],
        lr=OPT["lr"], betas=tuple(OPT["betas"]), eps=OPT["eps"])
    grads, losses = {}, []
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_of(cfg, params, tokens.to(torch.long))
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = {k: p.grad.clone() for k, p in params.items()}
        opt.step()
    return losses, grads, {k: p.detach() for k, p in params.items()}


def check(case_dir):
    case = json.load(open(os.path.join(case_dir, "case.json")))
    if case.get("optimizer", OPT) != OPT or case.get("steps", STEPS) != STEPS:
        sys.exit(f"{case_dir}: an optimizer or step count other than this script's")
    weights = read_safetensors(os.path.join(case_dir, case["weights"]))
    tokens = read_safetensors(os.path.join(case_dir, case["batch"]))["tokens"]
    want = read_safetensors(os.path.join(case_dir, case["expected"]))
    losses, grads, final = train(case["model"], weights, tokens)
    loss_err = max(abs(a - float(b)) / abs(float(b)) for a, b in zip(losses, want["loss"]))
    grad_err = max(float((g - want["grad/" + k].double()).abs().max()) for k, g in grads.items())
    final_err = max(float((w - want["final/" + k].double()).abs().max()) for k, w in final.items())
    print(json.dumps({"case": case_dir, "loss_max_rel_err": loss_err,
                      "grad_max_abs_err": grad_err, "final_max_abs_err": final_err}))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        for case_dir in sys.argv[2:]:
            check(case_dir)
        return
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    cfg = json.load(open(sys.argv[1]))
    batch, seq, seed, out = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if cfg.get("model_type") not in ("gpt2", "llama"):
        sys.exit(f"{sys.argv[1]}: model_type must be gpt2 or llama")
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape, kind in param_specs(cfg):
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        # Norms near 1 and biases near 0, perturbed so that their gradients are exercised too.
        weights[name] = {"w": 0.02 * r, "b": 0.02 * r, "n": 1 + 0.1 * r}[kind]
    tokens = torch.randint(0, cfg["vocab_size"], (batch, seq + 1), generator=gen,
                           dtype=torch.int32)
    write_safetensors(os.path.join(out, "weights.safetensors"), weights)
    write_safetensors(os.path.join(out, "batch.safetensors"), {"tokens": tokens})

    losses, grads, final = train(cfg, weights, tokens)
    expected = {"loss": torch.tensor(losses, dtype=torch.float32)}
    expected.update({"grad/" + k: g.to(torch.float32) for k, g in grads.items()})
    expected.update({"final/" + k: w.to(torch.float32) for k, w in final.items()})
    write_safetensors(os.path.join(out, "expected.safetensors"), expected)
    case = {"model": cfg, "weights": "weights.safetensors", "batch": "batch.safetensors",
            "expected": "expected.safetensors", "steps": STEPS, "optimizer": OPT,
            "generator": "scripts/reference_case.py MODEL.json %d %d %d, MODEL.json holding "
                         "'model' above (PyTorch %s, float64)" % (batch, seq, seed,
                                                                  torch.__version__)}
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
    print(json.dumps({"losses": losses}))


if __name__ == "__main__":
    main()
