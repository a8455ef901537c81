"""Which Hugging Face tensor every t1jax parameter is, and how its layout differs.

HF stores linear weights [out, in]; t1jax keeps projections [in, ...] with the heads as their
own axes: q [D, N, H] is q_proj.weight [N*H, D] transposed and split. Each layout knows the
whole conversion (export) and, for an index into the t1jax array (the block one device owns),
which block of the HF tensor to read and how to cut it (import).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from t1jax.config import ModelConfig

# Layouts: t1jax array <- HF tensor
COPY = "copy"  # the same array
TRANSPOSE = "transpose"  # [a, b] <- [b, a]
HEADS_IN = "heads_in"  # [D, N, H] <- [N*H, D]            (q, k, v projections)
HEADS_OUT = "heads_out"  # [N, H, D] <- [D, N*H]          (o projection)
HEADS_BIAS = "heads_bias"  # [N, H] <- [N*H]              (q, k, v biases)


@dataclasses.dataclass(frozen=True)
class Tensor:
    path: tuple  # where it sits in the params dict, e.g. ("blocks", 0, "attention", "q")
    key: str  # the HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
    layout: str

    def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The HF tensor's shape for a t1jax array of `shape`."""
        if self.layout == TRANSPOSE:
            return shape[::-1]
        if self.layout == HEADS_IN:
            return (shape[1] * shape[2], shape[0])
        if self.layout == HEADS_OUT:
            return (shape[2], shape[0] * shape[1])
        if self.layout == HEADS_BIAS:
            return (shape[0] * shape[1],)
        return tuple(shape)

    def to_hf(self, value: np.ndarray) -> np.ndarray:
        """The HF tensor of a whole t1jax array."""
        if self.layout == TRANSPOSE:
            return value.T
        if self.layout == HEADS_IN:
            d, n, h = value.shape
            return value.transpose(1, 2, 0).reshape(n * h, d)
        if self.layout == HEADS_OUT:
            n, h, d = value.shape
            return value.transpose(2, 0, 1).reshape(d, n * h)
        if self.layout == HEADS_BIAS:
            return value.reshape(-1)
        return value

    def read_block(self, read, index: tuple[slice, ...], head_dim: int) -> np.ndarray:
        """The block `index` (slices with step 1 and explicit bounds) of the t1jax array, given
        `read(hf_index)` that reads a block of the HF tensor. Reads the smallest HF block that
        covers it: exactly the block, unless a device owns part of a head's dimensions."""
        if self.layout == COPY:
            return read(index)
        if self.layout == TRANSPOSE:
            return read(index[::-1]).T
        h = head_dim
        if self.layout == HEADS_IN:
            d, n, hs = index
            rows = slice(n.start * h, n.stop * h)
            block = read((rows, d)).reshape(n.stop - n.start, h, d.stop - d.start)
            return block[:, hs, :].transpose(2, 0, 1)
        if self.layout == HEADS_OUT:
            n, hs, d = index
            cols = slice(n.start * h, n.stop * h)
            block = read((d, cols)).reshape(d.stop - d.start, n.stop - n.start, h)
            return block[:, :, hs].transpose(1, 2, 0)
        if self.layout == HEADS_BIAS:
            n, hs = index
            return read((slice(n.start * h, n.stop * h),)).reshape(n.stop - n.start, h)[:, hs]
        raise ValueError(self.layout)


def tensors(config: ModelConfig, family: str, prefix: str = "model.", head_key: str = "lm_head.weight") -> list[Tensor]:
    """Every parameter of `config` as the HF tensor of a `family` checkpoint, in HF's order.

    prefix: where the text model's tensors sit ("model.", "model.language_model.",
    "language_model.model."); head_key: the untied output projection's name.
    """
    out = [Tensor(("embed",), prefix + "embed_tokens.weight", COPY)]
    gemma = family == "gemma3_text"
    for i in range(config.num_layers):
        layer, block = f"{prefix}layers.{i}.", ("blocks", i)

        def add(path, key, layout, layer=layer, block=block):
            out.append(Tensor(block + path, layer + key, layout))

        add(("attention_norm", "scale"), "input_layernorm.weight", COPY)
        for name in ("q", "k", "v"):
            add(("attention", name), f"self_attn.{name}_proj.weight", HEADS_IN)
            if config.qkv_bias:
                add(("attention", f"{name}_bias"), f"self_attn.{name}_proj.bias", HEADS_BIAS)
        add(("attention", "o"), "self_attn.o_proj.weight", HEADS_OUT)
        if config.qk_norm:
            add(("attention", "q_norm", "scale"), "self_attn.q_norm.weight", COPY)
            add(("attention", "k_norm", "scale"), "self_attn.k_norm.weight", COPY)
        if gemma:
            add(("post_attention_norm", "scale"), "post_attention_layernorm.weight", COPY)
            add(("mlp_norm", "scale"), "pre_feedforward_layernorm.weight", COPY)
            add(("post_mlp_norm", "scale"), "post_feedforward_layernorm.weight", COPY)
        else:
            add(("mlp_norm", "scale"), "post_attention_layernorm.weight", COPY)
        for name in ("gate", "up", "down"):
            add(("mlp", name), f"mlp.{name}_proj.weight", TRANSPOSE)
    out.append(Tensor(("final_norm", "scale"), prefix + "norm.weight", COPY))
    if not config.tie_embeddings:
        out.append(Tensor(("unembed",), head_key, TRANSPOSE))
    return out
