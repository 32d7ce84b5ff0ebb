"""The torch baseline: every sdcl op in torch, with reference/ops.py's names and signatures, on torch tensors.

Each function is the fastest plain torch spelling of the op (torch's own kernels: oneDNN / MKL on a CPU, cuDNN /
cuBLAS / fused attention on CUDA), so "ours / torch" compares our kernel with what a torch user gets for the same
computation at the same shapes. tests/test_perf_torch_ops.py checks each against the NumPy reference.

Float32 on both sides: on CUDA, TF32 is switched off for the baseline (cuDNN enables it for convolutions by
default), since our kernels compute in full float32. The baseline runs where it is comparable: CPU torch for a CPU OpenCL device, CUDA torch for an NVIDIA GPU when
torch has CUDA; for any other device there is no baseline (and the benchmark says why).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def matmul(a, b):
    return torch.mm(a, b)


def batched_matmul(a, b):
    return torch.bmm(a, b)


def linear(x, weight, bias=None, residual=None):
    y = F.linear(x, weight, bias)
    return y if residual is None else y.add_(residual)


def conv2d(x, weight, bias=None, stride=1, padding=0, residual=None):
    if isinstance(padding, (tuple, list)) and len(padding) == 4:  # (top, bottom, left, right)
        top, bottom, left, right = padding
        x, padding = F.pad(x, (left, right, top, bottom)), 0
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    return y if residual is None else y.add_(residual)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return F.group_norm(x, num_groups, weight, bias, eps)


def group_norm_silu(x, num_groups, weight=None, bias=None, eps=1e-5):
    return F.silu(F.group_norm(x, num_groups, weight, bias, eps))


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def softmax(x, axis=-1):
    return torch.softmax(x, dim=axis)


def gelu(x):
    return F.gelu(x)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def silu(x):
    return F.silu(x)


def geglu(x):
    h, g = x.chunk(2, dim=-1)
    return h * F.gelu(g)


def attention(q, k, v, heads, causal=False, scale=None):
    b, lq, hd = q.shape
    lk, d = k.shape[1], hd // heads
    split = lambda t, n: t.reshape(b, n, heads, d).transpose(1, 2)  # (B, H, L, D)
    o = F.scaled_dot_product_attention(split(q, lq), split(k, lk), split(v, lk), is_causal=causal, scale=scale)
    return o.transpose(1, 2).reshape(b, lq, hd)


def timestep_embedding(timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0, max_period=10000.0):
    t = torch.as_tensor(timesteps)
    ct = torch.float64 if t.dtype == torch.float64 else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=ct, device=t.device)
                      / (half - downscale_freq_shift))
    args = t.to(ct)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb.to(torch.float16) if t.dtype == torch.float16 else emb   # a float16 model asks with float16 timesteps


def token_embedding(ids, token_table, position_table):
    return F.embedding(ids, token_table) + position_table[None, :ids.shape[1]]


def add(a, b):
    return a + b


def mul(a, b):
    return a * b


def concat(xs, axis=1):
    return torch.cat(list(xs), dim=axis)


def upsample_nearest2x(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


def permute(x, axes):
    return x.permute(*axes).contiguous()


# --------------------------------------------------------------------------------------------------- placement

def baseline_device(info: dict) -> tuple:
    """(torch device name, None) where a comparable torch baseline exists for an OpenCL device, else (None, why)."""
    if info["type"] == "CPU":
        return "cpu", None
    if info["type"] == "GPU" and "nvidia" in info["platform"].lower():
        if torch.cuda.is_available():
            # a float32 baseline: no TF32 tensor-core shortcuts (cuDNN allows them by default for convolutions)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            return "cuda", None
        return None, "NVIDIA GPU, but this torch has no CUDA (torch.cuda.is_available() is False)"
    return None, f"no torch backend comparable with a {info['type']} of {info['platform']!r}"


def astype(x, dtype):
    """x in another float dtype (numpy's dtype names), as the reference's ops.astype."""
    want = getattr(torch, np.dtype(dtype).name)
    return x if x.dtype == want else x.to(want)


def to_torch(a, device: str):
    """Host arrays (and lists of them) as torch tensors on `device`: floats keep their dtype, integer arrays
    (token ids, timesteps) become int64, scalars stay scalars."""
    if isinstance(a, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if a.dtype.kind in "iu":
            t = t.to(torch.int64)
        return t.to(device)
    if isinstance(a, list):
        return [to_torch(x, device) for x in a]
    return a


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def op_call(op: str, args: tuple, kwargs: dict, device: str):
    """A no-argument callable that runs `op` on torch copies of (args, kwargs) and waits for the result."""
    fn = globals()[op]
    targs = [to_torch(a, device) for a in args]
    tkw = {k: to_torch(v, device) for k, v in kwargs.items()}

    def call():
        with torch.inference_mode():
            fn(*targs, **tkw)
        synchronize(device)
    return call


def pipeline_backend(device: str):
    """A reference.pipeline.Backend whose ops are these: the pipeline's own code (tokenizer, sampler, guidance) on
    torch tensors, the torch baseline of the end-to-end benchmarks. Token ids and timesteps stay on the host (the
    ops take them from there, as the OpenCL backend's do)."""
    import types

    from sdcl.reference.pipeline import Backend
    ops = types.SimpleNamespace(**{k: v for k, v in globals().items() if callable(v) and not k.startswith("_")})
    # the host inputs of the models (token ids, timesteps) go to the baseline's device where the ops read them
    ops.token_embedding = lambda ids, tokens, positions: token_embedding(
        torch.as_tensor(np.asarray(ids), device=tokens.device).long(), tokens, positions)
    ops.timestep_embedding = lambda timesteps, *a, **k: timestep_embedding(
        torch.as_tensor(np.asarray(timesteps), device=device), *a, **k)

    def to_device(a):
        if isinstance(a, torch.Tensor):
            return a
        a = np.asarray(a)
        return to_torch(a, device) if a.dtype.kind == "f" else a

    def to_host(a):
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    return Backend(f"torch:{device}", ops, to_device=to_device, to_host=to_host,
                   sync=lambda: synchronize(device))


def torch_pipeline(config, weights: dict, device: str):
    """reference.pipeline.StableDiffusion with torch ops in every stage on `device` (pipeline_backend). The models
    check their weights as NumPy arrays when built (the transfers left out); then they get torch copies, as the
    layer benchmarks' models do."""
    from sdcl.reference.pipeline import Backend, StableDiffusion
    tb = pipeline_backend(device)
    build = Backend(tb.name, tb.ops)
    pipe = StableDiffusion(config, weights, text_backend=build, unet_backend=build, vae_backend=build)
    pipe.text_backend = pipe.unet_backend = pipe.vae_backend = tb
    for model in (pipe.text_encoder, pipe.unet, pipe.vae):
        model.w = {k: to_torch(v, device) if v.dtype.kind == "f" else v for k, v in model.w.items()}
    return pipe
