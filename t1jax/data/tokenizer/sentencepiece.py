"""A sentencepiece `.model` tokenizer: ours (trained in-process) or an existing one (Llama-2's,
Gemma's `tokenizer.model`)."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterable, Mapping

import sentencepiece as spm

from t1jax.data.tokenizer.base import (
    BOS,
    EOS,
    PAD,
    SENTENCEPIECE_FILE,
    UNK,
    Tokenizer,
    TokenizerFiles,
    _split_target,
)
from t1jax.errors import DataError


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model: ours (byte fallback, fixed special ids) or an existing one."""

    def __init__(self, model_proto: bytes, source: str = "<memory>", files: TokenizerFiles | None = None):
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except Exception as e:
            raise DataError(f"{source} is not a sentencepiece model: {e}") from None
        self._proto = model_proto
        self.files = files or TokenizerFiles()
        self._controls: dict[str, int] | None = None

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> SentencePieceTokenizer:
        """BPE with byte fallback (any Unicode text round-trips) and fixed special ids."""
        buffer = io.BytesIO()
        try:
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
        except RuntimeError as e:  # e.g. fewer pieces than the 256 bytes and specials need
            message = str(e).split("] ", 1)[-1].split(". Increase")[0]
            raise DataError(f"cannot train a tokenizer of {vocab_size} pieces (model.vocab_size): {message}") from None
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> SentencePieceTokenizer:
        """A `.model` file (or a directory holding tokenizer.model). A file named tokenizer.model
        brings the Hugging Face files of its directory (chat template, generation stop ids)."""
        file = pathlib.Path(path)
        if file.is_dir():
            file = file / SENTENCEPIECE_FILE
        if not file.is_file():
            raise DataError(f"tokenizer file not found: {path}")
        files = TokenizerFiles.read(file.parent) if file.name == SENTENCEPIECE_FILE else None
        return cls(file.read_bytes(), source=str(path), files=files)

    def save(self, path: str | pathlib.Path) -> None:
        directory, file = _split_target(path, SENTENCEPIECE_FILE)
        directory.mkdir(parents=True, exist_ok=True)
        file.write_bytes(self._proto)
        self.files.write(directory)

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    @property
    def pad_id(self) -> int:
        return max(self._sp.pad_id(), 0)  # models without a pad piece pad with id 0

    @property
    def bos_id(self) -> int | None:
        return self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    def garbage_ids(self) -> frozenset[int]:
        """Byte-fallback and unknown pieces: a response made mostly of them is garbage."""
        sp = self._sp
        return frozenset(i for i in range(self.vocab_size) if sp.IsByte(i) or sp.IsUnknown(i))

    def token_id(self, token: str) -> int | None:
        i = self._sp.PieceToId(token)
        return i if self._sp.IdToPiece(i) == token else None  # unknown pieces map to unk's id

    @property
    def control_tokens(self) -> Mapping[str, int]:
        """The control pieces (bos, eos, pad; Gemma's <start_of_turn>, <end_of_turn>, ...), which
        sentencepiece never produces from text."""
        if self._controls is None:
            sp = self._sp
            self._controls = {sp.IdToPiece(i): i for i in range(self.vocab_size) if sp.IsControl(i)}
        return self._controls

    def template_tokens(self) -> dict[str, str]:
        """The files' named tokens, else the model's own bos/eos/unk/pad pieces."""
        sp, own = self._sp, {}
        for name, i in (("bos_token", sp.bos_id()), ("eos_token", sp.eos_id()), ("unk_token", sp.unk_id())):
            if i >= 0:
                own[name] = sp.IdToPiece(i)
        if sp.pad_id() >= 0:
            own["pad_token"] = sp.IdToPiece(sp.pad_id())
        return {**own, **super().template_tokens()}

    def encode(self, text: str) -> list[int]:
        return self._sp.EncodeAsIds(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; ids beyond the tokenizer's vocabulary (a model's vocab_size may be
        larger, padded for sharding) have no text and are left out, and so do control pieces
        (sentencepiece's own rule: pad, bos, eos)."""
        size = self.vocab_size
        return self._sp.DecodeIds([int(i) for i in ids if 0 <= int(i) < size])
