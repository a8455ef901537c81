"""A sentencepiece tokenizer: train in-process, save/load `.model` files (ours or existing
ones such as Llama-2's or Gemma's `tokenizer.model`), special ids, the prompt/response template."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterable

import sentencepiece as spm

from t1jax.errors import DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    def __init__(self, model_proto: bytes, source: str = "<memory>"):
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise DataError(f"{source} is not a sentencepiece model: {e}") from None
        self._proto = model_proto

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """BPE with byte fallback (any Unicode text round-trips) and fixed special ids."""
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            split_digits=True,
            hard_vocab_limit=False,
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            normalization_rule_name="identity",
            minloglevel=2,
        )
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: str) -> Tokenizer:
        file = pathlib.Path(path)
        if not file.is_file():
            raise DataError(f"tokenizer file not found: {path}")
        return cls(file.read_bytes(), source=str(path))

    def save(self, path: str) -> None:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_bytes(self._proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    @property
    def pad_id(self) -> int:
        return max(self._sp.pad_id(), 0)  # models without a pad piece pad with id 0

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    def garbage_ids(self) -> frozenset[int]:
        """Byte-fallback and unknown pieces: a response made mostly of them is garbage."""
        sp = self._sp
        return frozenset(i for i in range(self.vocab_size) if sp.IsByte(i) or sp.IsUnknown(i))

    def encode(self, text: str) -> list[int]:
        return self._sp.EncodeAsIds(text)

    # The prompt/response template: a sequence is [bos] prompt response [eos]. The parts are
    # encoded separately so that no BPE merge crosses the boundary; the loss covers the
    # response and the eos, and the sampler continues after the prompt until eos.
    def encode_prompt(self, text: str) -> list[int]:
        return [self.bos_id, *self.encode(text)]

    def encode_response(self, text: str) -> list[int]:
        return [*self.encode(text), self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; ids beyond the tokenizer's vocabulary (a model's vocab_size may be
        larger, padded for sharding) have no text and are left out."""
        size = self.vocab_size
        return self._sp.DecodeIds([int(i) for i in ids if 0 <= int(i) < size])
