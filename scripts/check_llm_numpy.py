#!/usr/bin/env python3
"""Float64 numpy forward of SmolLM2 over the GGUF weights (dequantised with
the gguf package): a second check of examples/llm/model.c on the fixture
prompt. Prints the top-5 log-probs of the last 4 positions.
    pip install gguf numpy; python3 scripts/check_llm_numpy.py
"""
import numpy as np, sys
from gguf import GGUFReader
from gguf.quants import dequantize
r = GGUFReader(".model/SmolLM2-135M-Instruct.Q4_1.gguf")
T = {t.name: t for t in r.tensors}
def W(name):
    t = T[name]
    a = dequantize(t.data, t.tensor_type)
    return a.reshape([int(x) for x in reversed(t.shape)]).astype(np.float64)
ids = [int(x) for x in open("tests/llm/fixtures/smollm2_ref.txt").read().split("\nprompt ")[1].split("\n")[0].split()[1:]]
n = len(ids)
emb = W("token_embd.weight")
x = emb[ids]
nh, nkv, hd = 9, 3, 64
inv = 100000.0 ** (-np.arange(0, hd, 2) / hd)
ang = np.arange(n)[:, None] * inv[None, :]
cos, sin = np.cos(ang), np.sin(ang)
def rope(q, heads):
    q = q.reshape(n, heads, hd // 2, 2)
    a, b = q[..., 0], q[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.stack([a * c - b * s, a * s + b * c], -1).reshape(n, heads, hd)
def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w
mask = np.triu(np.full((n, n), -np.inf), 1)
for l in range(30):
    h = rms(x, W(f"blk.{l}.attn_norm.weight"))
    q = rope(h @ W(f"blk.{l}.attn_q.weight").T, nh)
    k = rope(h @ W(f"blk.{l}.attn_k.weight").T, nkv)
    v = (h @ W(f"blk.{l}.attn_v.weight").T).reshape(n, nkv, hd)
    out = np.zeros((n, nh, hd))
    for hh in range(nh):
        g = hh // 3
        s = q[:, hh] @ k[:, g].T / 8.0 + mask
        p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        out[:, hh] = p @ v[:, g]
    x = x + out.reshape(n, -1) @ W(f"blk.{l}.attn_output.weight").T
    h = rms(x, W(f"blk.{l}.ffn_norm.weight"))
    gt = h @ W(f"blk.{l}.ffn_gate.weight").T
    up = h @ W(f"blk.{l}.ffn_up.weight").T
    x = x + (gt / (1 + np.exp(-gt)) * up) @ W(f"blk.{l}.ffn_down.weight").T
h = rms(x, W("output_norm.weight"))
lg = h[-4:] @ emb.T
for i in range(4):
    row = lg[i]; lse = row.max() + np.log(np.exp(row - row.max()).sum())
    top = np.argsort(-row)[:5]
    print(n - 4 + i, [(int(t), round(float(row[t] - lse), 4)) for t in top])
