"""The small model shape that the sharding, checkpoint and sampling tests share."""

SMALL_MODEL = {
    "model.vocab_size": 64,
    "model.d_model": 32,
    "model.num_layers": 2,
    "model.num_heads": 4,
    "model.num_kv_heads": 2,
    "model.mlp_dim": 64,
}


def mesh_overrides(data: int, fsdp: int, tensor: int) -> dict:
    return {"mesh.data": data, "mesh.fsdp": fsdp, "mesh.tensor": tensor}
