"""The interface every tokenizer offers (`Tokenizer`), the Hugging Face files a tokenizer may carry
(`TokenizerFiles`), and the names of the files in a model or run directory."""

from __future__ import annotations

import abc
import json
import pathlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from t1jax.errors import DataError

if TYPE_CHECKING:
    from t1jax.data.tokenizer.sentencepiece import SentencePieceTokenizer

PAD, UNK, BOS, EOS = 0, 1, 2, 3

SENTENCEPIECE_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
GENERATION_CONFIG_FILE = "generation_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILES = (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, GENERATION_CONFIG_FILE, CHAT_TEMPLATE_FILE)
# The named special tokens a chat template sees as variables (transformers' SPECIAL_TOKENS_ATTRIBUTES).
TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerFiles:
    """The Hugging Face files beside a tokenizer, kept as the bytes that were read (and written back
    unchanged by `write`), with the few values t1jax reads from them."""

    def __init__(self, raw: Mapping[str, bytes] | None = None, source: str = "<memory>"):
        self.raw = dict(raw or {})
        self._json = {}
        for name, data in self.raw.items():
            if name.endswith(".json"):
                try:
                    value = json.loads(data)
                except ValueError as e:
                    raise DataError(f"{source}/{name} is not valid JSON: {e}") from None
                if not isinstance(value, dict):
                    raise DataError(f"{source}/{name} is not a JSON object")
                self._json[name] = value

    @classmethod
    def read(cls, directory: str | pathlib.Path) -> TokenizerFiles:
        d = pathlib.Path(directory)
        return cls({name: (d / name).read_bytes() for name in CONFIG_FILES if (d / name).is_file()}, str(d))

    def write(self, directory: str | pathlib.Path) -> None:
        for name, data in self.raw.items():
            (pathlib.Path(directory) / name).write_bytes(data)

    def json(self, name: str) -> dict:
        return self._json.get(name, {})

    def token(self, name: str) -> str | None:
        """The text of a named special token (e.g. "eos_token"): tokenizer_config.json's entry, else
        special_tokens_map.json's; None if neither names it."""
        for file in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
            config = self.json(file)
            if name in config:
                value = config[name]
                return value.get("content") if isinstance(value, dict) else value
        return None

    @property
    def chat_template(self) -> str | None:
        """chat_template.jinja, else tokenizer_config.json's `chat_template` (of several named ones,
        "default"), as transformers chooses it."""
        if CHAT_TEMPLATE_FILE in self.raw:
            return self.raw[CHAT_TEMPLATE_FILE].decode("utf-8")
        template = self.json(TOKENIZER_CONFIG_FILE).get("chat_template")
        if isinstance(template, list):
            template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if isinstance(template, dict):
            template = template.get("default")
        return template if isinstance(template, str) else None

    def generation_eos_ids(self) -> list[int]:
        """generation_config.json's eos_token_id (an int or a list: instruct models stop on several)."""
        value = self.json(GENERATION_CONFIG_FILE).get("eos_token_id")
        values = value if isinstance(value, list) else [] if value is None else [value]
        return [int(v) for v in values]


class Tokenizer(abc.ABC):
    """What the data, training, sampling and evaluation code asks of a tokenizer (see the module
    docstring). `Tokenizer.load` and `Tokenizer.train` pick the implementation."""

    files: TokenizerFiles

    @classmethod
    def load(cls, path: str | pathlib.Path) -> Tokenizer:
        """A `.model` file, a `tokenizer.json`, or a directory holding either (tokenizer.json first)."""
        from t1jax.data.tokenizer.huggingface import HFTokenizer
        from t1jax.data.tokenizer.sentencepiece import SentencePieceTokenizer

        p = pathlib.Path(path)
        if p.is_dir():
            if (p / HF_TOKENIZER_FILE).is_file():
                return HFTokenizer.load(p / HF_TOKENIZER_FILE)
            if (p / SENTENCEPIECE_FILE).is_file():
                return SentencePieceTokenizer.load(p / SENTENCEPIECE_FILE)
            raise DataError(f"no {HF_TOKENIZER_FILE} or {SENTENCEPIECE_FILE} in {path}")
        if p.suffix == ".json":
            return HFTokenizer.load(p)
        return SentencePieceTokenizer.load(p)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> SentencePieceTokenizer:
        """A new sentencepiece tokenizer (see SentencePieceTokenizer.train)."""
        from t1jax.data.tokenizer.sentencepiece import SentencePieceTokenizer

        return SentencePieceTokenizer.train(texts, vocab_size)

    @abc.abstractmethod
    def save(self, path: str | pathlib.Path) -> None:
        """Writes the tokenizer and its files into `path` if it is a directory (existing, or named
        without a suffix), else the tokenizer to the file `path` and its files beside it."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """One more than the largest id (a model's vocab_size may be larger, padded for sharding)."""

    @property
    @abc.abstractmethod
    def bos_id(self) -> int | None: ...

    @property
    @abc.abstractmethod
    def eos_id(self) -> int:
        """The tokenizer's own end-of-sequence id: the first of `eos_ids`."""

    @property
    @abc.abstractmethod
    def pad_id(self) -> int: ...

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of `text`, with no special tokens added (no bos, no eos)."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; ids beyond the vocabulary, pad, bos and eos have no text."""

    @abc.abstractmethod
    def garbage_ids(self) -> frozenset[int]:
        """Ids a response made mostly of is garbage (unknown and byte-fallback pieces)."""

    @abc.abstractmethod
    def token_id(self, token: str) -> int | None:
        """The id of the token whose text is `token` (a whole token, e.g. "<|im_end|>"), or None."""

    @property
    @abc.abstractmethod
    def control_tokens(self) -> Mapping[str, int]:
        """Text -> id of the control (special) tokens: never produced by encoding ordinary text;
        a rendered chat template gets them by id (`encode_rendered`)."""

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Every id generation stops on: `eos_id`, the eos_token of tokenizer_config.json, then
        generation_config.json's eos_token_id (Llama 3 instruct: <|end_of_text|>, <|eom_id|>,
        <|eot_id|>; Qwen2.5 instruct: <|im_end|>, <|endoftext|>)."""
        named = self.files.token("eos_token")
        ids = [self.eos_id, self.token_id(named) if named else None, *self.files.generation_eos_ids()]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    @property
    def chat_template(self) -> str | None:
        return self.files.chat_template

    def template_tokens(self) -> dict[str, str]:
        """The named special tokens' texts, the variables a chat template sees (bos_token, ...)."""
        return {name: text for name in TOKEN_NAMES if (text := self.files.token(name))}

    # The plain prompt/response template: a sequence is [bos] prompt response [eos]. The parts are
    # encoded separately so that no BPE merge crosses the boundary; the loss covers the response
    # and the eos, and the sampler continues after the prompt until eos.
    def prompt_prefix(self) -> list[int]:
        """The ids before a plain prompt: bos if the tokenizer has one."""
        return [] if self.bos_id is None else [self.bos_id]

    def encode_prompt(self, text: str) -> list[int]:
        return [*self.prompt_prefix(), *self.encode(text)]

    def encode_response(self, text: str) -> list[int]:
        return [*self.encode(text), self.eos_id]

    def encode_rendered(self, text: str) -> list[int]:
        """The ids of a rendered chat template: control tokens written in the text (e.g. Gemma's
        <start_of_turn>) are inserted by id, the text between them is encoded without specials."""
        controls = self.control_tokens
        present = sorted((t for t in controls if t and t in text), key=len, reverse=True)
        if not present:
            return self.encode(text)
        ids = []
        for i, part in enumerate(re.split("(" + "|".join(map(re.escape, present)) + ")", text)):
            if i % 2:
                ids.append(controls[part])
            elif part:
                ids += self.encode(part)
        return ids


def _split_target(path: str | pathlib.Path, default_name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(directory, file) that `save(path)` writes."""
    p = pathlib.Path(path)
    if p.is_dir() or not p.suffix:
        return p, p / default_name
    return p.parent, p
