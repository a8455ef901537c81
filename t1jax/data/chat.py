"""Chat templates and prompt formats.

A model's chat template (tokenizer_config.json's `chat_template` or chat_template.jinja) is Jinja
code from the model's authors. It is rendered as transformers' `apply_chat_template` renders it:
a sandboxed environment (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop
controls), `raise_exception`, `strftime_now`, a `tojson` that does not escape HTML, the named
special tokens (bos_token, eos_token, ...) and `add_generation_prompt` as variables. The rendered
text is encoded without added special tokens; control tokens in it are inserted by id
(`Tokenizer.encode_rendered`).

`encode_conversation` returns (ids, loss_mask) with the mask on the assistant's tokens only: its
messages' text and the end-of-turn token that closes each (what the model must learn to emit),
not the header the generation prompt already holds. The spans come from rendering the conversation
prefix by prefix: everything up to an assistant message with the generation prompt, then through
it; each span is encoded on its own, as the sampler meets it (a prompt, then generated tokens). A
template that renders earlier turns differently once later ones follow (Qwen3 drops the reasoning
of old turns) has no such spans: it is refused with an error saying so.

Prompt formats (`data.prompt_format`), one registry for SFT, RL and evaluation:
  plain          today's template: [bos] problem (the response follows, then eos)
  chat           the tokenizer's chat template: one user message, then the assistant's header
  qwen_math_cot  the chat template with Qwen2.5-Math's chain-of-thought system message
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from t1jax.data.benchmarks import BOXED_INSTRUCTION
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import DataError

Message = Mapping[str, object]


class ChatTemplateError(DataError):
    """A chat template is missing, fails to render, or cannot be split into messages."""


# --- rendering, as transformers.utils.chat_template_utils does it ---------------------------------


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (templates written for transformers'
    return_assistant_tokens_mask) renders its body; the spans come from prefixes here."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class _TemplateDict:
    """`dict(...)` in templates, without the attribute access a real class would give."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed attributes (no way to CPython internals)."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attributes: {name!r}")


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"the chat template does not compile: {e}") from None


def _plain(value):
    """The template sees plain JSON data only (strings, numbers, lists, dicts)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):  # subclasses (enums, numpy scalars) lose their methods
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item"):
        return _plain(value.item())
    return f"<{type(value).__name__}>"


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _messages(messages: Sequence[Message]) -> list[dict]:
    """transformers' normalisation: keys whose value is None are dropped, reasoning is also given
    as `reasoning_content` and `thinking`."""
    out = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise ChatTemplateError(f"a chat message must be a dict with role and content, not {message!r}")
        m = {k: _plain(v) for k, v in message.items() if v is not None}
        reasoning = next((m[k] for k in _REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def render(
    tokenizer: Tokenizer,
    messages: Sequence[Message],
    add_generation_prompt: bool = False,
    template: str | None = None,
    tools: Sequence[Mapping] | None = None,
    documents: Sequence[Mapping] | None = None,
    **variables,
) -> str:
    """The text of `messages` under `template` (default: the tokenizer's chat template), what
    transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt=..., tools=...,
    documents=..., **variables) gives. Tools are JSON schemas (dicts); `variables` are the
    template's own switches (e.g. Qwen3's enable_thinking)."""
    template = template if template is not None else tokenizer.chat_template
    if template is None:
        raise ChatTemplateError(
            "the tokenizer has no chat template (tokenizer_config.json's chat_template or chat_template.jinja)"
        )
    context = {**tokenizer.template_tokens(), **_plain(variables)}
    try:
        return _compile(template).render(
            messages=_messages(messages),
            tools=_plain(tools),
            documents=_plain(documents),
            add_generation_prompt=add_generation_prompt,
            **context,
        )
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"the chat template failed: {e}") from None


def encode_chat(
    tokenizer: Tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False, **variables
) -> list[int]:
    """The ids of the rendered conversation (transformers' apply_chat_template(tokenize=True))."""
    return tokenizer.encode_rendered(render(tokenizer, messages, add_generation_prompt, **variables))


def _end_of_turn(tokenizer: Tokenizer, text: str) -> int:
    """The length of `text` without the whitespace after its closing control token (Qwen writes
    "<|im_end|>\\n", Gemma "<end_of_turn>\\n": the model stops at the token, never emits the newline)."""
    stripped = text.rstrip()
    if len(stripped) < len(text) and any(stripped.endswith(t) for t in tokenizer.control_tokens if t):
        return len(stripped)
    return len(text)


def _generation_prompt(tokenizer: Tokenizer, messages: Sequence[Message], **variables) -> str:
    """What precedes an assistant message: the messages before it and the assistant's header
    (a conversation that opens with the assistant: whatever the template renders for none)."""
    try:
        return render(tokenizer, messages, True, **variables)
    except ChatTemplateError:
        if messages:
            raise
        return ""


def assistant_spans(
    tokenizer: Tokenizer, messages: Sequence[Message], **variables
) -> tuple[str, list[tuple[int, int]]]:
    """(text, spans): the rendered conversation and the [start, end) character spans of its
    assistant messages (their text and closing end-of-turn token)."""
    text = render(tokenizer, messages, False, **variables)
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = _generation_prompt(tokenizer, messages[:i], **variables)
        through = render(tokenizer, messages[: i + 1], False, **variables)
        if not (through.startswith(before) and text.startswith(through)):
            raise ChatTemplateError(
                f"the chat template does not render message {i} (assistant) as a continuation of the messages "
                "before it, so its tokens cannot be told apart (e.g. a template that rewrites earlier turns)"
            )
        start = len(before)
        spans.append((start, start + _end_of_turn(tokenizer, through[start:])))
    return text, spans


def encode_conversation(tokenizer: Tokenizer, messages: Sequence[Message], **variables) -> tuple[list[int], list[int]]:
    """(ids, loss_mask): the conversation's ids and 1 on the assistant's tokens (see the module
    docstring). Each assistant span and each stretch between spans is encoded on its own."""
    text, spans = assistant_spans(tokenizer, messages, **variables)
    ids, mask, position = [], [], 0
    for start, end in [*spans, (len(text), len(text))]:
        for part, weight in ((text[position:start], 0), (text[start:end], 1)):
            if part:
                part_ids = tokenizer.encode_rendered(part)
                ids += part_ids
                mask += [weight] * len(part_ids)
        position = end
    return ids, mask


# --- prompt formats ------------------------------------------------------------------------------

QWEN_MATH_COT_SYSTEM = BOXED_INSTRUCTION  # "Please reason step by step, and put your final answer within \boxed{}."


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a problem becomes a prompt: `plain` text after bos, or a chat (an optional system
    message and the user message, rendered by the tokenizer's chat template)."""

    name: str
    chat: bool
    system: str | None = None
    user: str = "{problem}"

    def messages(self, problem_text: str, response: str | None = None) -> list[dict]:
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        messages.append({"role": "user", "content": self.user.format(problem=problem_text)})
        if response is not None:
            messages.append({"role": "assistant", "content": response})
        return messages


PROMPT_FORMATS = {
    f.name: f
    for f in (
        PromptFormat("plain", chat=False),
        PromptFormat("chat", chat=True),
        PromptFormat("qwen_math_cot", chat=True, system=QWEN_MATH_COT_SYSTEM),
    )
}


def prompt_format(name: str) -> PromptFormat:
    if name not in PROMPT_FORMATS:
        raise ChatTemplateError(f"unknown prompt format {name!r}; known: {', '.join(PROMPT_FORMATS)}")
    return PROMPT_FORMATS[name]


def _chat_format(tokenizer: Tokenizer, name: str) -> PromptFormat:
    fmt = prompt_format(name)
    if fmt.chat and tokenizer.chat_template is None:
        raise ChatTemplateError(
            f"prompt format {name!r} needs a tokenizer with a chat template (tokenizer_config.json's "
            "chat_template or chat_template.jinja); use 'plain' for this tokenizer"
        )
    return fmt


def format_prompt(tokenizer: Tokenizer, problem_text: str, prompt_format: str = "plain") -> list[int]:
    """The prompt ids of a problem: what the sampler continues (RL rollouts, evaluation)."""
    fmt = _chat_format(tokenizer, prompt_format)
    if not fmt.chat:
        return tokenizer.encode_prompt(problem_text)
    return encode_chat(tokenizer, fmt.messages(problem_text), add_generation_prompt=True)


def format_example(
    tokenizer: Tokenizer, problem_text: str, response: str, prompt_format: str = "plain"
) -> tuple[list[int], list[int]]:
    """(ids, loss_mask) of an SFT example: the prompt of `format_prompt` (mask 0), then the
    response and its end token (mask 1): eos for plain, the template's end of turn for chats."""
    fmt = _chat_format(tokenizer, prompt_format)
    if not fmt.chat:
        prompt, answer = tokenizer.encode_prompt(problem_text), tokenizer.encode_response(response)
        return [*prompt, *answer], [0] * len(prompt) + [1] * len(answer)
    ids, mask = encode_conversation(tokenizer, fmt.messages(problem_text, response))
    end = max((i + 1 for i, m in enumerate(mask) if m), default=len(ids))  # not the newline after the end of turn
    return ids[:end], mask[:end]


def stop_ids(tokenizer: Tokenizer, prompt_format: str = "plain") -> tuple[int, ...]:
    """The ids sampling stops on: the tokenizer's eos ids and, for a chat format, the token that
    ends an assistant turn (<|im_end|> for Qwen2.5-Math base, whose eos is <|endoftext|>)."""
    fmt = _chat_format(tokenizer, prompt_format)
    stops = list(tokenizer.eos_ids)
    if fmt.chat:
        ids, mask = encode_conversation(tokenizer, fmt.messages("1 + 1?", "2"))
        last = max(i for i, m in enumerate(mask) if m)
        if ids[last] in tokenizer.control_tokens.values():
            stops.append(ids[last])
    return tuple(dict.fromkeys(stops))
