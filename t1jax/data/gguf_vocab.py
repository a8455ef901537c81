"""The tokenizer inside a GGUF file, rebuilt as the sentencepiece model it was converted from.

llama.cpp stores a sentencepiece vocabulary (`tokenizer.ggml.model` "llama") as three arrays:
the pieces, their scores and their types, whose numbers are sentencepiece's own (1 normal,
2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). With the special ids and
`add_space_prefix` that is all a BPE `ModelProto` needs, so the rebuilt `tokenizer.model` encodes
as the original did. Two repairs: llama.cpp writes user-defined pieces with raw spaces (Gemma's
30 whitespace runs, "  " ...), which sentencepiece matches against text whose spaces are already
escaped, so they are written back with U+2581; and a file whose unknown piece is typed control
gets it typed unknown, which sentencepiece requires.

    write_tokenizer_model("gemma-3-270m-q4_k_m.gguf", "run/tokenizer.model")
"""

from __future__ import annotations

import json
import pathlib

from t1jax.errors import CheckpointError
from t1jax.model.gguf import gguf_value, open_gguf

SPACE = "\u2581"  # sentencepiece's escaped space
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _open(source):
    """(reader, name for messages) of a path or an open gguf.GGUFReader."""
    if isinstance(source, str | pathlib.Path):
        return open_gguf(source), str(source)
    return source, str(getattr(source.data, "filename", None) or "the GGUF file")


def sentencepiece_model(source) -> bytes:
    """The serialized sentencepiece ModelProto of a GGUF file (a path or a gguf.GGUFReader)."""
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    reader, path = _open(source)
    kind = gguf_value(reader, "tokenizer.ggml.model", None, path)
    if kind != "llama":
        raise CheckpointError(
            f"{path}: tokenizer.ggml.model is {kind!r}; only sentencepiece vocabularies ('llama') can be rebuilt"
        )
    pieces = gguf_value(reader, "tokenizer.ggml.tokens", path=path)
    scores = gguf_value(reader, "tokenizer.ggml.scores", None, path) or [0.0] * len(pieces)
    types = gguf_value(reader, "tokenizer.ggml.token_type", None, path) or [NORMAL] * len(pieces)
    if not len(pieces) == len(scores) == len(types):
        raise CheckpointError(
            f"{path}: {len(pieces)} tokens, {len(scores)} scores and {len(types)} token types do not match"
        )

    def special(name: str, default: int | None) -> int | None:
        value = gguf_value(reader, f"tokenizer.ggml.{name}_token_id", default, path)
        if value is not None and not 0 <= int(value) < len(pieces):
            raise CheckpointError(f"{path}: tokenizer.ggml.{name}_token_id {value} is outside the vocabulary")
        return None if value is None else int(value)

    unk, bos, eos, pad = special("unknown", 0), special("bos", None), special("eos", None), special("padding", None)

    model = sp_pb2.ModelProto()
    seen: dict[str, int] = {}
    for i, (piece, score, kind) in enumerate(zip(pieces, scores, types)):
        kind = int(kind)
        if i == unk:
            kind = UNKNOWN
        elif kind == UNKNOWN or kind not in (NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE):
            kind = NORMAL  # 0 (undefined) in some files; a second unknown piece would be refused
        if kind == USER_DEFINED:
            piece = piece.replace(" ", SPACE)  # matched against text whose spaces are escaped
        if piece in seen:
            raise CheckpointError(f"{path}: token {i} {piece!r} repeats token {seen[piece]}")
        seen[piece] = i
        entry = model.pieces.add()
        entry.piece, entry.score, entry.type = piece, float(score), kind

    trainer = model.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(pieces)
    trainer.byte_fallback = BYTE in {int(t) for t in types}
    trainer.unk_id, trainer.unk_piece = unk, pieces[unk]
    for name, index in (("bos", bos), ("eos", eos), ("pad", pad)):
        setattr(trainer, f"{name}_id", -1 if index is None else index)
        if index is not None:
            setattr(trainer, f"{name}_piece", pieces[index])
    normalizer = model.normalizer_spec
    normalizer.name = "identity"
    charsmap = gguf_value(reader, "tokenizer.ggml.precompiled_charsmap", None, path)
    if charsmap:
        normalizer.precompiled_charsmap = bytes(int(b) & 0xFF for b in charsmap)
    # llama.cpp adds the dummy prefix to a sentencepiece vocabulary unless the file says otherwise
    normalizer.add_dummy_prefix = bool(gguf_value(reader, "tokenizer.ggml.add_space_prefix", True, path))
    normalizer.remove_extra_whitespaces = bool(gguf_value(reader, "tokenizer.ggml.remove_extra_whitespaces", False))
    normalizer.escape_whitespaces = True
    return model.SerializeToString()


def tokenizer_config(source) -> dict:
    """A Hugging Face tokenizer_config.json for the file's tokenizer: the named special tokens,
    add_bos_token/add_eos_token and, when the file has one, its chat template."""
    reader, _ = _open(source)
    pieces = gguf_value(reader, "tokenizer.ggml.tokens", [])
    config = {}
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        index = gguf_value(reader, f"tokenizer.ggml.{key}_token_id", None)
        if index is not None and 0 <= int(index) < len(pieces):
            config[f"{name}_token"] = pieces[int(index)]
    for key in ("add_bos_token", "add_eos_token"):
        value = gguf_value(reader, f"tokenizer.ggml.{key}", None)
        if value is not None:
            config[key] = bool(value)
    template = gguf_value(reader, "tokenizer.chat_template", None)
    if template:
        config["chat_template"] = template
    return config


def write_tokenizer_model(source, out: str | pathlib.Path) -> pathlib.Path:
    """Writes the file's tokenizer as a sentencepiece `.model` at `out` (a file, or a directory
    that gets tokenizer.model) and, beside it, tokenizer_config.json; returns the .model path."""
    target = pathlib.Path(out)
    if target.is_dir() or not target.suffix:
        target = target / "tokenizer.model"
    target.parent.mkdir(parents=True, exist_ok=True)
    reader, _ = _open(source)
    target.write_bytes(sentencepiece_model(reader))
    (target.parent / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(reader), indent=2) + "\n")
    return target
