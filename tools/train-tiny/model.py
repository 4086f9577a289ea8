"""A DeepSeek-V4 model in PyTorch at any width: the forward pass of the official
architecture (spec ../shared/spec/architecture.md §5; the float numerics of
libdsv4's lib/graph), the official checkpoint format in both directions, and
quantisation-aware training helpers.

Layers: window attention (every layer), CSA (compress ratio 4: overlapping
compressor and the lightning indexer choosing the top-k compressed entries),
HCA (any other ratio: non-overlapping compressor, every entry), manifold-
constrained hyper-connections (mHC, hc_mult streams, Sinkhorn mixing), MoE with
hash routing (first num_hash_layers layers) or learned routing (sqrt-softplus
scores, selection bias), FP4 routed experts, an FP8 shared expert, and the
depth-1 MTP block.

The forward is the whole sequence at once from position 0 (prefill): every
position sees what decode would see at that position (causal window, the
compressed entries complete at its position, the indexer's top-k over those),
so its logits are also those of token-by-token decode.

Numerics are float32 throughout with no activation quantisation (libdsv4's
`float` numerics, the `noaq` goldens). Weights are the checkpoint's, dequantised
(FP8 e4m3 x E8M0 128x128 blocks, FP4 e2m1 x E8M0 1x32 blocks, BF16); with
`fake_quant` on, the forward uses the weights as they will be exported
(straight-through gradients), so training is quantisation-aware.

Runs with Debian's python3-torch (1.13) and numpy only.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# number formats
# ---------------------------------------------------------------------------------------------


def _e4m3_table():
    t = np.zeros(256, np.float32)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = m / 8.0 * 2.0 ** -6
        else:
            v = (1 + m / 8.0) * 2.0 ** (e - 7)
        t[b] = -v if s else v
    return t


E4M3 = _e4m3_table()
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
# non-negative codes sorted by value (e4m3: codes 0..126 are increasing)
_E4M3_POS = torch.tensor(E4M3[:127])
_E2M1_POS = torch.tensor(E2M1[:8])


def _nearest_code(a, grid):
    """index of the nearest value of the increasing grid to a >= 0 (ties to the even code)"""
    a = a.clamp(max=float(grid[-1]))
    hi = torch.searchsorted(grid, a.contiguous()).clamp(max=len(grid) - 1)
    lo = (hi - 1).clamp(min=0)
    dlo, dhi = a - grid[lo], grid[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    return torch.where(pick_hi, hi, lo)


def _pow2_scale(amax, qmax):
    """power-of-two scale s with amax / s <= qmax (E8M0 exponent returned too)"""
    amax = amax.clamp(min=1e-30)
    e = torch.ceil(torch.log2(amax / qmax))
    # guard log2 rounding: make sure amax / 2^e <= qmax and 2^(e-1) would not do
    e = torch.where(amax / torch.exp2(e) > qmax, e + 1, e)
    e = torch.where(amax / torch.exp2(e - 1) <= qmax, e - 1, e)
    e = e.clamp(-127, 127)
    return torch.exp2(e), (e + 127).to(torch.uint8)


def fp8_block_quant(w, block=128):
    """w [out, in] float -> (e4m3 codes uint8 [out, in], E8M0 scales uint8 [ceil(out/128), ceil(in/128)],
    dequantised float)"""
    o, i = w.shape
    bo, bi = -(-o // block), -(-i // block)
    wp = F.pad(w.detach().float(), (0, bi * block - i, 0, bo * block - o))
    blk = wp.view(bo, block, bi, block)
    amax = blk.abs().amax(dim=(1, 3))
    s, sb = _pow2_scale(amax, 448.0)
    x = blk / s[:, None, :, None]
    code = _nearest_code(x.abs(), _E4M3_POS)
    code = torch.where((x < 0) & (code > 0), code + 128, code)
    deq = torch.from_numpy(E4M3)[code] * s[:, None, :, None]
    code = code.view(bo * block, bi * block)[:o, :i].to(torch.uint8)
    deq = deq.view(bo * block, bi * block)[:o, :i]
    return code, sb, deq


def fp4_block_quant(w, block=32):
    """w [out, in] -> (packed uint8 [out, in/2] low nibble = even element, E8M0 [out, in/32], dequantised)"""
    o, i = w.shape
    blk = w.detach().float().view(o, i // block, block)
    amax = blk.abs().amax(dim=2)
    s, sb = _pow2_scale(amax, 6.0)
    x = blk / s[:, :, None]
    code = _nearest_code(x.abs(), _E2M1_POS)
    code = torch.where(x < 0, code + 8, code)
    deq = (torch.from_numpy(E2M1)[code] * s[:, :, None]).view(o, i)
    code = code.view(o, i)
    packed = (code[:, 0::2] | (code[:, 1::2] << 4)).to(torch.uint8)
    return packed, sb, deq


def bf16_round(w):
    return w.detach().float().to(torch.bfloat16).float()


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, fmt):
        if fmt == "fp8":
            return fp8_block_quant(w)[2].to(w.dtype)
        if fmt == "fp4":
            return fp4_block_quant(w)[2].to(w.dtype)
        return bf16_round(w).to(w.dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------

_ST_NP = {"F32": np.float32, "I64": np.int64, "I8": np.uint8, "U8": np.uint8, "F8_E4M3": np.uint8,
          "F8_E8M0": np.uint8, "BF16": np.uint16, "I32": np.int32}


def read_safetensors(path):
    """{name: (dtype string, numpy array of raw values)}"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=_ST_NP[v["dtype"]]).reshape(v["shape"])
        out[k] = (v["dtype"], arr)
    return out


def write_safetensors(path, tensors):
    """tensors: {name: (dtype string, numpy array)}; written in name order"""
    hdr, blobs, off = {}, [], 0
    for k in sorted(tensors):
        dt, arr = tensors[k]
        b = np.ascontiguousarray(arr).tobytes()
        hdr[k] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_checkpoint_tensors(ckpt):
    """every tensor of an official-format checkpoint dir, dequantised to float32 torch tensors
    (FP8/FP4 weights combined with their .scale); I64 tables stay int64"""
    idx = os.path.join(ckpt, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    raw = {}
    for fn in files:
        raw.update(read_safetensors(os.path.join(ckpt, fn)))
    out = {}
    for k, (dt, a) in raw.items():
        if k.endswith(".scale"):
            continue
        if dt == "BF16":
            t = torch.from_numpy((a.astype(np.uint32) << 16).view(np.float32).copy())
        elif dt == "F32":
            t = torch.from_numpy(a.copy())
        elif dt == "I64" or dt == "I32":
            t = torch.from_numpy(a.astype(np.int64))
        elif dt == "F8_E4M3":
            s = raw[k[: -len("weight")] + "scale"][1]
            sv = np.exp2(s.astype(np.float32) - 127)
            v = E4M3[a]
            o, i = v.shape
            v = v * np.repeat(np.repeat(sv, 128, 0), 128, 1)[:o, :i]
            t = torch.from_numpy(v.astype(np.float32))
        elif dt == "I8":
            s = raw[k[: -len("weight")] + "scale"][1]
            sv = np.exp2(s.astype(np.float32) - 127)
            o = a.shape[0]
            codes = np.empty((o, a.shape[1] * 2), np.uint8)
            codes[:, 0::2] = a & 15
            codes[:, 1::2] = a >> 4
            v = E2M1[codes] * np.repeat(sv, 32, 1)
            t = torch.from_numpy(v.astype(np.float32))
        else:
            raise ValueError(f"{k}: dtype {dt}")
        out[k] = t
    return out


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------

class Config:
    def __init__(self, d):
        self.raw = d
        self.vocab = d["vocab_size"]
        self.dim = d["hidden_size"]
        self.n_layers = d["num_hidden_layers"]
        self.n_hash = d["num_hash_layers"]
        self.ratios = list(d["compress_ratios"])
        self.n_mtp = d.get("num_nextn_predict_layers", 1)
        self.n_heads = d["num_attention_heads"]
        self.head_dim = d["head_dim"]
        self.rope_dim = d["qk_rope_head_dim"]
        self.q_lora = d["q_lora_rank"]
        self.o_groups = d["o_groups"]
        self.o_lora = d["o_lora_rank"]
        self.n_experts = d["n_routed_experts"]
        self.topk_experts = d["num_experts_per_tok"]
        self.inter = d["moe_intermediate_size"]
        self.route_scale = d["routed_scaling_factor"]
        self.swiglu_limit = d["swiglu_limit"]
        self.ih = d["index_n_heads"]
        self.ihd = d["index_head_dim"]
        self.index_topk = d["index_topk"]
        self.window = d["sliding_window"]
        self.hc = d["hc_mult"]
        self.sinkhorn = d["hc_sinkhorn_iters"]
        self.hc_eps = d["hc_eps"]
        self.eps = d["rms_norm_eps"]
        self.rope_theta = d["rope_theta"]
        self.comp_theta = d["compress_rope_theta"]
        rs = d.get("rope_scaling") or {}
        self.orig_len = rs.get("original_max_position_embeddings", 0)
        self.rope_factor = rs.get("factor", 0)
        self.beta_fast = rs.get("beta_fast", 32)
        self.beta_slow = rs.get("beta_slow", 1)


def make_config(vocab, dim=128, n_layers=4, ratios=(0, 4, 128, 4, 0), n_hash=2, n_heads=4, head_dim=128,
                q_lora=128, o_groups=2, o_lora=64, n_experts=8, topk=2, inter=128, ih=4, ihd=128, index_topk=8,
                window=64, bos=0, eos=1):
    """a config.json dict in the official layout"""
    return {
        "architectures": ["DeepseekV4ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "hc_eps": 1e-06, "hc_mult": 4, "hc_sinkhorn_iters": 20,
        "head_dim": head_dim, "hidden_act": "silu", "hidden_size": dim, "index_head_dim": ihd,
        "index_n_heads": ih, "index_topk": index_topk, "initializer_range": 0.02,
        "max_position_embeddings": 1048576, "model_type": "deepseek_v4", "moe_intermediate_size": inter,
        "n_routed_experts": n_experts, "n_shared_experts": 1, "norm_topk_prob": True,
        "num_attention_heads": n_heads, "num_experts_per_tok": topk, "num_hidden_layers": n_layers,
        "num_hash_layers": n_hash, "num_key_value_heads": 1, "num_nextn_predict_layers": 1,
        "o_groups": o_groups, "o_lora_rank": o_lora, "q_lora_rank": q_lora, "qk_rope_head_dim": 64,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "scale_fmt": "ue8m0", "weight_block_size": [128, 128]},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16,
                         "original_max_position_embeddings": 65536, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.5, "scoring_func": "sqrtsoftplus",
        "sliding_window": window, "swiglu_limit": 10.0, "tie_word_embeddings": False,
        "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "transformers_version": "4.57.1",
        "use_cache": True, "vocab_size": vocab, "compress_rope_theta": 160000,
        "compress_ratios": list(ratios), "expert_dtype": "fp4",
    }


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------

def rope_freqs(base, rope_dim, orig_len=0, factor=0, beta_fast=32, beta_slow=1):
    half = rope_dim // 2
    f = [1.0 / base ** (2 * i / rope_dim) for i in range(half)]
    if orig_len > 0 and factor > 0:
        lo_c = rope_dim * math.log(orig_len / (beta_fast * 2 * math.pi)) / (2 * math.log(base))
        hi_c = rope_dim * math.log(orig_len / (beta_slow * 2 * math.pi)) / (2 * math.log(base))
        lo, hi = max(math.floor(lo_c), 0), min(math.ceil(hi_c), rope_dim - 1)
        if lo == hi:
            hi += 0.001
        for i in range(half):
            ramp = min(max((i - lo) / (hi - lo), 0.0), 1.0)
            f[i] = f[i] / factor * ramp + f[i] * (1 - ramp)
    return torch.tensor(np.array(f, np.float32))


def apply_rope(x, pos, freqs, inverse=False):
    """rotate interleaved pairs of the last dim of x [..., T, (heads,) rd] at positions pos [T]"""
    ang = pos.float()[:, None] * freqs[None, :]            # [T, half] (f32 product as in C)
    c, s = torch.cos(ang.double()).float(), torch.sin(ang.double()).float()
    if inverse:
        s = -s
    while c.dim() < x.dim() - 1:
        c, s = c.unsqueeze(-2), s.unsqueeze(-2)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return out.flatten(-2)


def rope_tail(x, pos, freqs, rd, inverse=False):
    return torch.cat((x[..., :-rd], apply_rope(x[..., -rd:], pos, freqs, inverse)), dim=-1)


def rmsnorm(x, w, eps):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    y = x * r
    return y * w if w is not None else y


def hadamard(x):
    n = x.shape[-1]
    h = 1
    y = x
    while h < n:
        y = y.view(*x.shape[:-1], n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return y.reshape(x.shape) / math.sqrt(n)


class QLinear(nn.Module):
    """weight [out, in] with its checkpoint format: fp8 (e4m3 + 128x128 E8M0), fp4 (e2m1 + 1x32 E8M0),
    bf16 or f32"""

    def __init__(self, out_f, in_f, fmt, std=None):
        super().__init__()
        self.fmt = fmt
        self.weight = nn.Parameter(torch.randn(out_f, in_f) * (std if std is not None else in_f ** -0.5))
        self.fake_quant = False

    def w(self):
        if self.fake_quant and self.fmt != "f32":
            return _STE.apply(self.weight, self.fmt)
        return self.weight

    def forward(self, x):
        return x @ self.w().t()


def set_fake_quant(model, on):
    for m in model.modules():
        if isinstance(m, (QLinear, MoE, Model)):
            m.fake_quant = on


class Compressor(nn.Module):
    def __init__(self, cfg, ratio, d):
        super().__init__()
        self.ratio, self.d = ratio, d
        self.coff = 2 if ratio == 4 else 1
        w = self.coff * d
        self.wkv = QLinear(w, cfg.dim, "bf16")
        self.wgate = QLinear(w, cfg.dim, "bf16")
        self.ape = nn.Parameter(torch.randn(ratio, w) * 0.1)
        self.norm = nn.Parameter(torch.ones(d))

    def forward(self, x, cfg, freqs):
        """x [B, T, dim] -> entries [B, T // ratio, d] (norm and RoPE at block start applied)"""
        B, T, _ = x.shape
        r, d = self.ratio, self.d
        nb = T // r
        if nb == 0:
            return x.new_zeros(B, 0, d)
        v = self.wkv(x[:, : nb * r]).view(B, nb, r, self.coff * d)
        g = (self.wgate(x[:, : nb * r]).view(B, nb, r, self.coff * d) + self.ape[None, None])
        if r == 4:
            pv = torch.cat((v.new_zeros(B, 1, r, d), v[:, :-1, :, :d]), dim=1)
            pg = torch.cat((g.new_full((B, 1, r, d), float("-inf")), g[:, :-1, :, :d]), dim=1)
            v = torch.cat((pv, v[..., d:]), dim=2)
            g = torch.cat((pg, g[..., d:]), dim=2)
        p = torch.softmax(g, dim=2)
        e = (p * v).sum(2)
        e = rmsnorm(e, self.norm, cfg.eps)
        pos = torch.arange(nb) * r
        return rope_tail(e, pos, freqs, cfg.rope_dim)


class Attention(nn.Module):
    def __init__(self, cfg, ratio):
        super().__init__()
        self.ratio = ratio
        H, hd = cfg.n_heads, cfg.head_dim
        self.wq_a = QLinear(cfg.q_lora, cfg.dim, "fp8")
        self.q_norm = nn.Parameter(torch.ones(cfg.q_lora))
        self.wq_b = QLinear(H * hd, cfg.q_lora, "fp8")
        self.wkv = QLinear(hd, cfg.dim, "fp8")
        self.kv_norm = nn.Parameter(torch.ones(hd))
        self.wo_a = QLinear(cfg.o_groups * cfg.o_lora, H * hd // cfg.o_groups, "fp8")
        self.wo_b = QLinear(cfg.dim, cfg.o_groups * cfg.o_lora, "fp8")
        self.attn_sink = nn.Parameter(torch.zeros(H))
        if ratio > 0:
            self.compressor = Compressor(cfg, ratio, hd)
        if ratio == 4:
            self.indexer = nn.Module()
            self.indexer.wq_b = QLinear(cfg.ih * cfg.ihd, cfg.q_lora, "fp8")
            self.indexer.weights_proj = QLinear(cfg.ih, cfg.dim, "bf16")
            self.indexer.compressor = Compressor(cfg, 4, cfg.ihd)
        if ratio > 0:
            f = rope_freqs(cfg.comp_theta, cfg.rope_dim, cfg.orig_len, cfg.rope_factor, cfg.beta_fast,
                           cfg.beta_slow)
        else:
            f = rope_freqs(cfg.rope_theta, cfg.rope_dim)
        self.register_buffer("freqs", f, persistent=False)

    def forward(self, x, cfg, stats=None):
        B, T, _ = x.shape
        H, hd, rd = cfg.n_heads, cfg.head_dim, cfg.rope_dim
        pos = torch.arange(T)
        ql = rmsnorm(self.wq_a(x), self.q_norm, cfg.eps)
        q = rmsnorm(self.wq_b(ql).view(B, T, H, hd), None, cfg.eps)
        q = rope_tail(q, pos, self.freqs, rd)
        kv = rmsnorm(self.wkv(x), self.kv_norm, cfg.eps)
        kv = rope_tail(kv, pos, self.freqs, rd)                       # [B, T, hd]
        i = pos[:, None]
        j = pos[None, :]
        mask = (j <= i) & (j > i - cfg.window)                        # [T, T]
        keys = kv
        mask = mask[None].expand(B, T, T)
        if self.ratio > 0:
            r = self.ratio
            ent = self.compressor(x, cfg, self.freqs)                 # [B, N, hd]
            N = ent.shape[1]
            vis = torch.arange(N)[None, :] < ((pos + 1) // r)[:, None]  # [T, N]
            vis = vis[None].expand(B, T, N)
            if r == 4 and (N > cfg.index_topk or (self.training and N > 0)):
                qi = self.indexer.wq_b(ql).view(B, T, cfg.ih, cfg.ihd)
                qi = hadamard(rope_tail(qi, pos, self.freqs, rd))
                wt = self.indexer.weights_proj(x) * (cfg.ihd ** -0.5 * cfg.ih ** -0.5)
                ik = hadamard(self.indexer.compressor(x, cfg, self.freqs))   # [B, N, ihd]
                dots = torch.einsum("bthd,bnd->bthn", qi, ik).relu()
                sc = torch.einsum("bthn,bth->btn", dots, wt)
                sc = sc.masked_fill(~vis, float("-inf"))
                if self.training:
                    self._index_scores, self._index_vis = sc, vis
                sc = sc.detach()
                if N > cfg.index_topk:
                    # top-k by score, ties to the lower index; never more than the visible ones
                    k = cfg.index_topk
                    order = torch.argsort(-sc, dim=-1, stable=True)[..., :k]
                    sel = torch.zeros_like(vis)
                    sel.scatter_(-1, order, True)
                    vis = vis & sel
            keys = torch.cat((kv, ent), dim=1)
            mask = torch.cat((mask, vis), dim=2)
        s = torch.einsum("bthd,bnd->bhtn", q, keys) * (hd ** -0.5)
        s = s.masked_fill(~mask[:, None], float("-inf"))
        sink = self.attn_sink.view(1, H, 1, 1).expand(B, H, T, 1)
        p = torch.softmax(torch.cat((s, sink), dim=-1), dim=-1)[..., :-1]
        if self.training and getattr(self, "_index_scores", None) is not None:
            # indexer training signal: its distribution over the visible entries should follow the
            # attention mass the heads put on them (all visible entries scored, target detached)
            sc, vis = self._index_scores, self._index_vis
            self._index_scores = None
            tgt = p[..., T:].sum(1).detach()                      # [B, T, N]
            rows = vis.any(-1) & (tgt.sum(-1) > 0)
            tgt = tgt / tgt.sum(-1, keepdim=True).clamp(min=1e-9)
            logq = torch.log_softmax(sc.masked_fill(~vis, -1e9), dim=-1)
            kl = (tgt * (torch.log(tgt.clamp(min=1e-9)) - logq)).sum(-1)
            self.aux_loss = kl[rows].mean() if rows.any() else sc.new_zeros(())
        o = torch.einsum("bhtn,bnd->bthd", p, keys)
        o = rope_tail(o, pos, self.freqs, rd, inverse=True)
        G = cfg.o_groups
        o = o.reshape(B, T, G, H * hd // G)
        wa = self.wo_a.w().view(G, cfg.o_lora, H * hd // G)
        z = torch.einsum("btgi,goi->btgo", o, wa).reshape(B, T, G * cfg.o_lora)
        return self.wo_b(z)


class Expert(nn.Module):
    def __init__(self, cfg, fmt):
        super().__init__()
        self.w1 = QLinear(cfg.inter, cfg.dim, fmt)
        self.w2 = QLinear(cfg.dim, cfg.inter, fmt)
        self.w3 = QLinear(cfg.inter, cfg.dim, fmt)


def swiglu(g, u, lim):
    if lim > 0:
        g = g.clamp(max=lim)
        u = u.clamp(-lim, lim)
    return F.silu(g) * u


class MoE(nn.Module):
    def __init__(self, cfg, hash_routed):
        super().__init__()
        self.hash = hash_routed
        self.gate = nn.Module()
        self.gate.weight = nn.Parameter(torch.randn(cfg.n_experts, cfg.dim) * cfg.dim ** -0.5)
        if hash_routed:
            self.gate.register_buffer("tid2eid", torch.zeros(cfg.vocab, cfg.topk_experts, dtype=torch.int64))
        else:
            self.gate.bias = nn.Parameter(torch.zeros(cfg.n_experts))
        self.experts = nn.ModuleList([Expert(cfg, "fp4") for _ in range(cfg.n_experts)])
        self.shared_experts = Expert(cfg, "fp8")

    def forward(self, x, tokens, cfg, stats=None):
        B, T, D = x.shape
        xf = x.reshape(B * T, D)
        gw = self.gate.weight
        if getattr(self, "fake_quant", False):
            gw = _STE.apply(gw, "bf16")
        s = torch.sqrt(F.softplus(xf @ gw.t()))
        if self.hash:
            sel = self.gate.tid2eid[tokens.reshape(-1)]
        else:
            key = (s + self.gate.bias).detach()
            # K best by key, ties to the lower id (argsort is stable)
            sel = torch.argsort(-key, dim=-1, stable=True)[:, : cfg.topk_experts]
        w = s.gather(1, sel)
        w = cfg.route_scale * w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(xf)
        lim = cfg.swiglu_limit
        for e, ex in enumerate(self.experts):
            rows, slot = (sel == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            xe = xf[rows]
            h = w[rows, slot, None] * swiglu(ex.w1(xe), ex.w3(xe), lim)
            out = out.index_add(0, rows, ex.w2(h))
        if self.training:
            self.load = torch.bincount(sel.reshape(-1), minlength=cfg.n_experts)
        if stats is not None:
            stats.append(torch.bincount(sel.reshape(-1), minlength=cfg.n_experts))
        se = self.shared_experts
        out = out + se.w2(swiglu(se.w1(xf), se.w3(xf), lim))
        return out.view(B, T, D)


class HC(nn.Module):
    """the three parameters of one mHC site (fn, base, scale)"""

    def __init__(self, cfg, n_mix, n_scale):
        super().__init__()
        self.fn = nn.Parameter(torch.randn(n_mix, cfg.hc * cfg.dim) * 0.01)
        self.base = nn.Parameter(torch.zeros(n_mix))
        self.scale = nn.Parameter(torch.ones(n_scale))


def hc_mix(X, site, cfg):
    """X [B, T, hc, D] -> mixes [B, T, n]"""
    x = X.flatten(-2)
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps)
    return (x @ site.fn.t()) * r


def hc_pre(X, site, cfg):
    hc = cfg.hc
    m = hc_mix(X, site, cfg)
    sc, b = site.scale, site.base
    pre = torch.sigmoid(m[..., :hc] * sc[0] + b[:hc]) + cfg.hc_eps
    post = 2 * torch.sigmoid(m[..., hc: 2 * hc] * sc[1] + b[hc: 2 * hc])
    c = (m[..., 2 * hc:] * sc[2] + b[2 * hc:]).view(*m.shape[:-1], hc, hc)
    c = torch.softmax(c, dim=-1) + cfg.hc_eps
    for it in range(cfg.sinkhorn):
        if it > 0:
            c = c / (c.sum(-1, keepdim=True) + cfg.hc_eps)
        c = c / (c.sum(-2, keepdim=True) + cfg.hc_eps)
    u = (pre[..., :, None] * X).sum(-2)
    return u, post, c


def hc_post(X, o, post, comb):
    # X'[k] = post_k * o + sum_j C[j][k] X[j]
    return post[..., :, None] * o[..., None, :] + torch.einsum("btjk,btjd->btkd", comb, X)


def hc_head(X, site, cfg):
    m = hc_mix(X, site, cfg)
    w = torch.sigmoid(m * site.scale[0] + site.base) + cfg.hc_eps
    return (w[..., :, None] * X).sum(-2)


class Block(nn.Module):
    def __init__(self, cfg, ratio, hash_routed):
        super().__init__()
        n_mix = (2 + cfg.hc) * cfg.hc
        self.hc_attn = HC(cfg, n_mix, 3)
        self.hc_ffn = HC(cfg, n_mix, 3)
        self.attn_norm = nn.Parameter(torch.ones(cfg.dim))
        self.ffn_norm = nn.Parameter(torch.ones(cfg.dim))
        self.attn = Attention(cfg, ratio)
        self.ffn = MoE(cfg, hash_routed)

    def forward(self, X, tokens, cfg, stats=None):
        u, post, comb = hc_pre(X, self.hc_attn, cfg)
        X = hc_post(X, self.attn(rmsnorm(u, self.attn_norm, cfg.eps), cfg), post, comb)
        u, post, comb = hc_pre(X, self.hc_ffn, cfg)
        X = hc_post(X, self.ffn(rmsnorm(u, self.ffn_norm, cfg.eps), tokens, cfg, stats), post, comb)
        return X


class MTP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.block = Block(cfg, cfg.ratios[cfg.n_layers], False)
        self.e_proj = QLinear(cfg.dim, cfg.dim, "fp8")
        self.h_proj = QLinear(cfg.dim, cfg.dim, "fp8")
        self.enorm = nn.Parameter(torch.ones(cfg.dim))
        self.hnorm = nn.Parameter(torch.ones(cfg.dim))
        self.norm = nn.Parameter(torch.ones(cfg.dim))
        self.hc_head = HC(cfg, cfg.hc, 1)


class Model(nn.Module):
    def __init__(self, cfg_dict):
        super().__init__()
        cfg = self.cfg = Config(cfg_dict)
        self.embed = nn.Parameter(torch.randn(cfg.vocab, cfg.dim))
        self.layers = nn.ModuleList([Block(cfg, cfg.ratios[i], i < cfg.n_hash) for i in range(cfg.n_layers)])
        self.norm = nn.Parameter(torch.ones(cfg.dim))
        self.head = QLinear(cfg.vocab, cfg.dim, "bf16")
        self.hc_head = HC(cfg, cfg.hc, 1)
        self.mtp = MTP(cfg) if cfg.n_mtp else None
        self.fake_quant = False

    def _emb(self, tokens):
        e = self.embed
        if self.fake_quant:
            e = _STE.apply(e, "bf16")
        return e[tokens]

    def _head(self, X, site, norm, rows=None):
        y = rmsnorm(hc_head(X, site, self.cfg), norm, self.cfg.eps)
        if rows is not None:
            y = y[rows]
        return y @ self.head.w().t()

    def forward(self, tokens, mtp=True, stats=None, rows=None, mtp_rows=None):
        """tokens [B, T] (positions 0..T-1) -> (logits [B, T, V], MTP logits [B, T-1, V] or None);
        MTP row i predicts token i+2 from the trunk state at i and token i+1 (RoPE position i).
        rows / mtp_rows (bool [B, T] / [B, T-1]): logits of those rows only, as [n, V] (training)"""
        cfg = self.cfg
        h = self._emb(tokens)
        X = h[:, :, None, :].expand(-1, -1, cfg.hc, -1)
        for layer in self.layers:
            X = layer(X, tokens, cfg, stats)
        logits = self._head(X, self.hc_head, self.norm, rows)
        ml = None
        if mtp and self.mtp is not None and tokens.shape[1] > 1:
            m = self.mtp
            e = rmsnorm(self._emb(tokens[:, 1:]), m.enorm, cfg.eps)
            hn = rmsnorm(X[:, :-1], m.hnorm, cfg.eps)
            Z = m.e_proj(e)[:, :, None, :] + m.h_proj(hn)
            Z = m.block(Z, tokens[:, 1:], cfg, stats)
            ml = self._head(Z, m.hc_head, m.norm, mtp_rows)
        return logits, ml


# ---------------------------------------------------------------------------------------------
# checkpoint names
# ---------------------------------------------------------------------------------------------

def _block_names(prefix, blk, cfg, ratio, hash_routed):
    """(checkpoint name, parameter, format) for one block"""
    out = []
    for site, hcm in (("attn", blk.hc_attn), ("ffn", blk.hc_ffn)):
        out += [(f"{prefix}hc_{site}_fn", hcm.fn, "f32"), (f"{prefix}hc_{site}_base", hcm.base, "f32"),
                (f"{prefix}hc_{site}_scale", hcm.scale, "f32")]
    out += [(f"{prefix}attn_norm.weight", blk.attn_norm, "bf16"), (f"{prefix}ffn_norm.weight", blk.ffn_norm, "bf16")]
    a = blk.attn
    p = prefix + "attn."
    for n in ("wq_a", "wq_b", "wkv", "wo_a", "wo_b"):
        out.append((f"{p}{n}.weight", getattr(a, n).weight, "fp8"))
    out += [(f"{p}q_norm.weight", a.q_norm, "bf16"), (f"{p}kv_norm.weight", a.kv_norm, "bf16"),
            (f"{p}attn_sink", a.attn_sink, "f32")]

    def comp(cp, c):
        return [(f"{cp}wkv.weight", c.wkv.weight, "bf16"), (f"{cp}wgate.weight", c.wgate.weight, "bf16"),
                (f"{cp}ape", c.ape, "f32"), (f"{cp}norm.weight", c.norm, "bf16")]
    if ratio > 0:
        out += comp(p + "compressor.", a.compressor)
    if ratio == 4:
        ix = a.indexer
        out += [(f"{p}indexer.wq_b.weight", ix.wq_b.weight, "fp8"),
                (f"{p}indexer.weights_proj.weight", ix.weights_proj.weight, "bf16")]
        out += comp(p + "indexer.compressor.", ix.compressor)
    f = blk.ffn
    p = prefix + "ffn."
    out.append((f"{p}gate.weight", f.gate.weight, "bf16"))
    if hash_routed:
        out.append((f"{p}gate.tid2eid", f.gate.tid2eid, "i64"))
    else:
        out.append((f"{p}gate.bias", f.gate.bias, "f32"))
    for e, ex in enumerate(f.experts):
        for n in ("w1", "w2", "w3"):
            out.append((f"{p}experts.{e}.{n}.weight", getattr(ex, n).weight, "fp4"))
    for n in ("w1", "w2", "w3"):
        out.append((f"{p}shared_experts.{n}.weight", getattr(f.shared_experts, n).weight, "fp8"))
    return out


def param_names(model):
    cfg = model.cfg
    out = [("embed.weight", model.embed, "bf16"), ("head.weight", model.head.weight, "bf16"),
           ("norm.weight", model.norm, "bf16"), ("hc_head_fn", model.hc_head.fn, "f32"),
           ("hc_head_base", model.hc_head.base, "f32"), ("hc_head_scale", model.hc_head.scale, "f32")]
    for i, blk in enumerate(model.layers):
        out += _block_names(f"layers.{i}.", blk, cfg, cfg.ratios[i], i < cfg.n_hash)
    if model.mtp is not None:
        m = model.mtp
        out += _block_names("mtp.0.", m.block, cfg, cfg.ratios[cfg.n_layers], False)
        out += [("mtp.0.e_proj.weight", m.e_proj.weight, "fp8"), ("mtp.0.h_proj.weight", m.h_proj.weight, "fp8"),
                ("mtp.0.enorm.weight", m.enorm, "bf16"), ("mtp.0.hnorm.weight", m.hnorm, "bf16"),
                ("mtp.0.norm.weight", m.norm, "bf16"), ("mtp.0.hc_head_fn", m.hc_head.fn, "f32"),
                ("mtp.0.hc_head_base", m.hc_head.base, "f32"), ("mtp.0.hc_head_scale", m.hc_head.scale, "f32")]
    return out


def load_model(ckpt):
    """a Model holding an official-format checkpoint's weights (dequantised)"""
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    model = Model(cfg)
    t = load_checkpoint_tensors(ckpt)
    with torch.no_grad():
        for name, p, fmt in param_names(model):
            if name not in t:
                raise KeyError(f"checkpoint lacks {name}")
            src = t[name]
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(f"{name}: shape {tuple(src.shape)} != {tuple(p.shape)}")
            p.copy_(src.to(p.dtype))
    model.eval()
    return model


def export(model, out_dir, extra_config=None):
    """write model as an official-format checkpoint (config.json, model.safetensors.index.json,
    model-00001-of-00001.safetensors); weights quantised to their checkpoint formats"""
    os.makedirs(out_dir, exist_ok=True)
    cfg = dict(model.cfg.raw)
    if extra_config:
        cfg.update(extra_config)
    tensors = {}
    for name, p, fmt in param_names(model):
        w = p.detach().float()
        if fmt == "fp8":
            code, sc, _ = fp8_block_quant(w)
            tensors[name] = ("F8_E4M3", code.numpy())
            tensors[name[: -len("weight")] + "scale"] = ("F8_E8M0", sc.numpy())
        elif fmt == "fp4":
            packed, sc, _ = fp4_block_quant(w)
            tensors[name] = ("I8", packed.numpy())
            tensors[name[: -len("weight")] + "scale"] = ("F8_E8M0", sc.numpy())
        elif fmt == "bf16":
            tensors[name] = ("BF16", w.contiguous().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
        elif fmt == "f32":
            tensors[name] = ("F32", w.numpy().astype(np.float32))
        elif fmt == "i64":
            tensors[name] = ("I64", p.detach().numpy().astype(np.int64))
    fn = "model-00001-of-00001.safetensors"
    write_safetensors(os.path.join(out_dir, fn), tensors)
    total = sum(a.nbytes for _, a in tensors.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": {k: fn for k in sorted(tensors)}}, f, indent=1)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return out_dir


def init_weights(model, seed, test_spread=False):
    """a fresh initialisation from a seed. test_spread=True spreads the parameters that training would
    move (selection bias, mHC, sinks, norms) the way the golden tiny models do, so that a test
    exercises every path; False is the starting point of training"""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg

    def rn(p, std, mean=0.0):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * std + mean)

    def ru(p, lo, hi):
        with torch.no_grad():
            p.copy_(torch.rand(p.shape, generator=g) * (hi - lo) + lo)
    out_names = ("wo_b", "w2")
    depth = 2 * (cfg.n_layers + 1)
    for name, p, fmt in param_names(model):
        leaf = name.split(".")[-2] if name.endswith(".weight") else name.split(".")[-1]
        if name.endswith("tid2eid"):
            with torch.no_grad():
                p.copy_(torch.stack([torch.randperm(cfg.n_experts, generator=g)[: cfg.topk_experts]
                                     for _ in range(cfg.vocab)]))
        elif name == "embed.weight":
            rn(p, 1.0)
        elif name.endswith("norm.weight"):
            if test_spread:
                rn(p, 0.1, 1.0)
            else:
                with torch.no_grad():
                    p.fill_(1.0)
        elif name.endswith("_fn"):
            rn(p, 0.01 if test_spread else 0.002)
        elif name.endswith("_base"):
            if test_spread:
                rn(p, 0.5)
            else:
                with torch.no_grad():
                    p.zero_()
        elif name.endswith("_scale"):
            if test_spread:
                ru(p, 0.5, 1.5)
            else:
                with torch.no_grad():
                    p.fill_(1.0)
        elif name.endswith("attn_sink"):
            rn(p, 1.0 if test_spread else 0.0)
        elif name.endswith("ape"):
            rn(p, 0.1 if test_spread else 0.02)
        elif name.endswith("gate.bias"):
            rn(p, 0.05 if test_spread else 0.0)
        elif p.dim() == 2:
            std = p.shape[1] ** -0.5
            if leaf in out_names and not test_spread:
                std /= math.sqrt(depth)
            rn(p, std)
        else:
            rn(p, 0.02)
    return model


def quantise_in_place(model):
    """replace every parameter by the value its checkpoint format stores (what export writes)"""
    with torch.no_grad():
        for name, p, fmt in param_names(model):
            if fmt == "fp8":
                p.copy_(fp8_block_quant(p)[2])
            elif fmt == "fp4":
                p.copy_(fp4_block_quant(p)[2])
            elif fmt == "bf16":
                p.copy_(bf16_round(p))
    return model
