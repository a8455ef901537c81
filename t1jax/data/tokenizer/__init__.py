"""Tokenizers behind one interface, `Tokenizer`, with two implementations:

- `SentencePieceTokenizer`: a sentencepiece `.model` (ours, trained in-process by `Tokenizer.train`,
  or an existing one such as Llama-2's or Gemma's `tokenizer.model`);
- `HFTokenizer`: a Hugging Face `tokenizers` `tokenizer.json` (Qwen2.5, Llama 3: byte-level BPE).

Either may carry the Hugging Face files that say how a model uses it (`TokenizerFiles`):
tokenizer_config.json (special tokens, the chat template), special_tokens_map.json,
generation_config.json (the ids generation stops on) and chat_template.jinja. `Tokenizer.load`
takes a `.model` file, a `tokenizer.json`, or a directory holding either (tokenizer.json wins when
both are there); `save` writes the tokenizer and those files back unchanged, so a run directory
holds everything the source model shipped.

The common API: `encode(text)` adds no special tokens; `decode(ids)` leaves out what callers do not
want to read (ids beyond the vocabulary, pad, bos, eos); `bos_id` (None if none), `eos_ids` (all
ids generation stops on; `eos_id` is the first), `pad_id`, `vocab_size`, `garbage_ids()`; the
plain prompt/response template `encode_prompt`/`encode_response`; `encode_rendered(text)` for
the text a chat template rendered, with control tokens inserted by id (t1jax.data.chat).
"""

from t1jax.data.tokenizer.base import (
    BOS,
    CONFIG_FILES,
    EOS,
    GENERATION_CONFIG_FILE,
    HF_TOKENIZER_FILE,
    PAD,
    SENTENCEPIECE_FILE,
    TOKENIZER_CONFIG_FILE,
    UNK,
    Tokenizer,
    TokenizerFiles,
)
from t1jax.data.tokenizer.huggingface import HFTokenizer
from t1jax.data.tokenizer.sentencepiece import SentencePieceTokenizer

__all__ = [
    "BOS",
    "CONFIG_FILES",
    "EOS",
    "GENERATION_CONFIG_FILE",
    "HF_TOKENIZER_FILE",
    "PAD",
    "SENTENCEPIECE_FILE",
    "TOKENIZER_CONFIG_FILE",
    "UNK",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerFiles",
]
