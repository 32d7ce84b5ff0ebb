"""CLIP text encoders of Stable Diffusion, written once against an ops namespace (docs/ARCHITECTURE.md).

Both families are the transformers `CLIPTextModel` architecture; only the numbers in `TextEncoderConfig` differ:
- SD 1.x: OpenAI CLIP ViT-L/14 text model, 12 layers, width 768, quick_gelu.
- SD 2.x: OpenCLIP ViT-H/14 text tower as diffusers' SD 2 `text_encoder` holds it: 23 of OpenCLIP's 24 layers
  (SD 2 conditions on the penultimate layer's output), width 1024, exact (erf) gelu, then the final layer norm.

Per layer (pre-norm transformer, causal self-attention):
    h = h + out_proj(attention(q_proj(ln1(h)), k_proj(ln1(h)), v_proj(ln1(h)), causal))
    h = h + fc2(act(fc1(ln2(h))))
and the output is final_layer_norm(h): transformers' `last_hidden_state`, what the UNet cross-attends to.

Weight names are the checkpoint names, `text_model.embeddings.token_embedding.weight`, ... (the keys of
`text_encoder/model.safetensors` in a diffusers folder, written by transformers 4.x). transformers 5 dropped the
`text_model.` level from `CLIPTextModel`'s own module tree (its state_dict says `embeddings.token_embedding.weight`)
and strips the prefix when it loads such a file; the names below are the on-disk ones.
"""

from __future__ import annotations

import numpy as np

import sdcl.reference.ops as reference_ops
from sdcl.reference.configs import TextEncoderConfig
from sdcl.reference.validation import check_shapes
from sdcl.reference.weights import random_weights

PREFIX = "text_model."

# transformers' hidden_act name -> the op that computes it.
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}


def param_shapes(cfg: TextEncoderConfig) -> dict[str, tuple]:
    """Every weight the text encoder reads, keyed by its checkpoint name, with its shape.

    transformers' CLIPTextEmbeddings also has a `position_ids` buffer (arange(max_position_embeddings)); it is
    not a parameter (non-persistent, absent from checkpoints) and is not listed: positions are 0..L-1 by
    construction here (ops.token_embedding slices the position table)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    shapes = {
        f"{PREFIX}embeddings.token_embedding.weight": (cfg.vocab_size, d),
        f"{PREFIX}embeddings.position_embedding.weight": (cfg.max_position_embeddings, d),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"{PREFIX}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{p}self_attn.{proj}.weight"] = (d, d)
            shapes[f"{p}self_attn.{proj}.bias"] = (d,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{p}{norm}.weight"] = (d,)
            shapes[f"{p}{norm}.bias"] = (d,)
        shapes[f"{p}mlp.fc1.weight"] = (f, d)
        shapes[f"{p}mlp.fc1.bias"] = (f,)
        shapes[f"{p}mlp.fc2.weight"] = (d, f)
        shapes[f"{p}mlp.fc2.bias"] = (d,)
    shapes[f"{PREFIX}final_layer_norm.weight"] = (d,)
    shapes[f"{PREFIX}final_layer_norm.bias"] = (d,)
    return shapes


def init_weights(cfg: TextEncoderConfig, seed: int = 0, dtype=np.float32) -> dict:
    """Seeded random weights with the real key names and shapes."""
    return random_weights(param_shapes(cfg), seed=seed, dtype=dtype)


class TextEncoder:
    """input_ids (B, L) host integer array, L <= max_position_embeddings -> last_hidden_state (B, L, hidden_size).

    No padding mask: like SD's pipelines, every position (pad tokens included) is encoded; the causal mask is
    the only mask, so a token never sees the padding after it."""

    def __init__(self, cfg: TextEncoderConfig, weights: dict, ops=reference_ops):
        if cfg.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"text encoder: unsupported hidden_act {cfg.hidden_act!r}; "
                             f"expected one of {', '.join(_ACTIVATIONS)}")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"text encoder: hidden_size {cfg.hidden_size} is not divisible by "
                             f"num_attention_heads {cfg.num_attention_heads}")
        check_shapes(param_shapes(cfg), weights, "text encoder weights")
        self.cfg, self.w, self.ops = cfg, weights, ops
        self.act = getattr(ops, _ACTIVATIONS[cfg.hidden_act])

    def _layer(self, h, i: int):
        """One pre-norm transformer layer; h (B, L, D) -> (B, L, D)."""
        ops, w, eps = self.ops, self.w, self.cfg.layer_norm_eps
        p = f"{PREFIX}encoder.layers.{i}."

        # a. causal self-attention, pre-norm, residual
        x = ops.layer_norm(h, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)           # (B, L, D)
        q = ops.linear(x, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"])          # (B, L, H*Dh)
        k = ops.linear(x, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"])          # (B, L, H*Dh)
        v = ops.linear(x, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"])          # (B, L, H*Dh)
        a = ops.attention(q, k, v, self.cfg.num_attention_heads, causal=True)                        # (B, L, H*Dh)
        h = ops.linear(a, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"], residual=h)

        # b. MLP, pre-norm, residual
        x = ops.layer_norm(h, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)           # (B, L, D)
        x = self.act(ops.linear(x, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))                  # (B, L, F)
        return ops.linear(x, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"], residual=h)              # (B, L, D)

    def __call__(self, input_ids: np.ndarray):
        ops, w, cfg = self.ops, self.w, self.cfg

        # 1. token + position embeddings; input_ids stay a host integer array
        h = ops.token_embedding(input_ids, w[f"{PREFIX}embeddings.token_embedding.weight"],
                                w[f"{PREFIX}embeddings.position_embedding.weight"])                  # (B, L, D)

        # 2. the transformer layers (SD 2.x: the 23 that give OpenCLIP's penultimate output)
        for i in range(cfg.num_hidden_layers):
            h = self._layer(h, i)                                                                    # (B, L, D)

        # 3. final layer norm -> last_hidden_state
        return ops.layer_norm(h, w[f"{PREFIX}final_layer_norm.weight"], w[f"{PREFIX}final_layer_norm.bias"],
                              cfg.layer_norm_eps)                                                    # (B, L, D)
