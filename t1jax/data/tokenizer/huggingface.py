"""A Hugging Face `tokenizers` tokenizer.json (Qwen2.5, Llama 3: byte-level BPE)."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterable, Mapping

import tokenizers

from t1jax.data.tokenizer.base import (
    HF_TOKENIZER_FILE,
    Tokenizer,
    TokenizerFiles,
    _split_target,
)
from t1jax.errors import DataError


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` tokenizer (tokenizer.json) and the files beside it.

    Special tokens come from tokenizer_config.json (else special_tokens_map.json): eos_token is
    required, bos_token and pad_token optional (pad falls back to eos). `encode` is `tokenizers`'
    encode with add_special_tokens=False: what transformers' `encode(text, add_special_tokens=False)`
    returns. Like transformers, `tokenizers` matches added tokens written in the text (e.g.
    "<|im_end|>") to their ids before the model splits the rest, so a rendered chat template's
    control tokens get their ids and never their spelling's pieces.
    """

    def __init__(self, tokenizer_json: str | bytes, source: str = "<memory>", files: TokenizerFiles | None = None):
        data = tokenizer_json.encode("utf-8") if isinstance(tokenizer_json, str) else tokenizer_json
        try:
            self._tok = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:
            raise DataError(f"{source} is not a Hugging Face tokenizer.json: {e}") from None
        self._json, self.files, self._source = data, files or TokenizerFiles(), source
        self._vocab_size = max(self._tok.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        added = self._tok.get_added_tokens_decoder()
        self._controls = {token.content: i for i, token in sorted(added.items()) if token.special}
        self._eos_id = self._named_id("eos_token")
        if self._eos_id is None:
            generation = self.files.generation_eos_ids()
            if not generation:
                raise DataError(
                    f"{source}: no eos token (tokenizer_config.json names no eos_token and no "
                    f"generation_config.json gives an eos_token_id beside it)"
                )
            self._eos_id = generation[0]
        self._bos_id = self._named_id("bos_token")
        pad = self._named_id("pad_token")
        self._pad_id = self._eos_id if pad is None else pad
        # What the post-processor puts before a single sequence (Llama 3: <|begin_of_text|>; Qwen: nothing).
        encoding = self._tok.encode("a", add_special_tokens=True)
        lead = 0
        while lead < len(encoding.ids) and encoding.special_tokens_mask[lead]:
            lead += 1
        self._prefix = list(encoding.ids[:lead])

    def _named_id(self, name: str) -> int | None:
        text = self.files.token(name)
        if not text:
            return None
        i = self._tok.token_to_id(text)
        if i is None:
            raise DataError(f"{self._source}: the {name} {text!r} of tokenizer_config.json is not in the vocabulary")
        return i

    @classmethod
    def load(cls, path: str | pathlib.Path) -> HFTokenizer:
        """A tokenizer.json (or a directory holding one) and the Hugging Face files beside it."""
        file = pathlib.Path(path)
        if file.is_dir():
            file = file / HF_TOKENIZER_FILE
        if not file.is_file():
            raise DataError(f"tokenizer file not found: {path}")
        return cls(file.read_bytes(), source=str(path), files=TokenizerFiles.read(file.parent))

    def save(self, path: str | pathlib.Path) -> None:
        """Into a directory: tokenizer.json and the files. A `.json` path names the tokenizer file;
        any other file path (e.g. a run's tokenizer.model) saves into the directory holding it."""
        directory, file = _split_target(path, HF_TOKENIZER_FILE)
        if file.suffix != ".json":
            file = directory / HF_TOKENIZER_FILE
        directory.mkdir(parents=True, exist_ok=True)
        file.write_bytes(self._json)
        self.files.write(directory)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def bos_id(self) -> int | None:
        return self._bos_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id

    def prompt_prefix(self) -> list[int]:
        return list(self._prefix)

    def garbage_ids(self) -> frozenset[int]:
        """The unknown token, and for a BPE with byte fallback (sentencepiece-style tokenizer.json,
        e.g. Gemma's) its <0xXX> byte pieces. A byte-level BPE (Qwen, Llama 3) has none: it spells
        every text, rare scripts included, with ordinary tokens over a 256-symbol byte alphabet, so
        no id marks text the vocabulary could not cover (and its single-byte tokens include plain
        letters, which must not count as garbage)."""
        model = json.loads(self._json).get("model", {})
        ids = set()
        if model.get("unk_token") is not None and (unk := self._tok.token_to_id(model["unk_token"])) is not None:
            ids.add(unk)
        if model.get("byte_fallback"):
            byte_piece = re.compile(r"<0x[0-9A-Fa-f]{2}>")
            ids |= {i for token, i in self._tok.get_vocab().items() if byte_piece.fullmatch(token)}
        return frozenset(ids)

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    @property
    def control_tokens(self) -> Mapping[str, int]:
        return self._controls

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_rendered(self, text: str) -> list[int]:
        # `tokenizers` itself splits added tokens out of the text and inserts them by id, with
        # their lstrip/rstrip/normalized options, as transformers' apply_chat_template does.
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; ids beyond the vocabulary, pad, bos and the eos ids are left out; other
        special tokens are written out. No clean-up of spaces: decode(encode(t)) == t."""
        size, drop = self.vocab_size, {self.pad_id, self.bos_id, *self.eos_ids}
        kept = [int(i) for i in ids if 0 <= int(i) < size and int(i) not in drop]
        return self._tok.decode(kept, skip_special_tokens=False)
