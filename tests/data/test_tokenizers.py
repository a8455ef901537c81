"""Tokenizers behind one interface and chat templates, against transformers as the reference.

Small tokenizers are built here (byte-level BPEs shaped like Qwen2.5's and Llama 3's, wrapped in
transformers' PreTrainedTokenizerFast with chat templates modelled on theirs and saved with
save_pretrained; sentencepiece models trained in-process), so everything runs offline."""

import io
import json

import pytest
import sentencepiece as spm
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as RawTokenizer

from t1jax.data import chat
from t1jax.data.tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer, TokenizerFiles
from t1jax.errors import CheckpointError, DataError
from t1jax.runtime.run_dir import has_tokenizer, run_tokenizer, save_run_tokenizer

transformers = pytest.importorskip("transformers")
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_SPLIT = QWEN_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")

# Qwen2.5's template without the tool branches, plus tool_calls written with tojson.
QWEN_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- generation %}
        {{- message.content }}
        {%- if message.tool_calls is defined %}
            {{- '\\n<tool_call>' + message.tool_calls | tojson + '</tool_call>' }}
        {%- endif %}
        {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Llama 3.1's template without tools: bos_token, strftime_now, trim, raise_exception, namespace.
LLAMA_TEMPLATE = """{{- bos_token }}
{%- set ns = namespace(system="") %}
{%- if messages[0]['role'] == 'system' %}
    {%- set ns.system = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + strftime_now("%d %b %Y") + "\\n\\n" }}
{{- ns.system }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception("Conversation roles must be user or assistant, not " + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

GEMMA_TEMPLATE = """{{ bos_token }}
{%- for message in messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}
"""

TEXTS = [
    "",
    "Solve 3x + 7 = 22.",
    "1234567890 and 3.14159, 1,000,000",
    "Let $x = \\frac{1}{2}$ so \\sqrt{x^2} = |x| and \\boxed{\\frac{3}{4}}",
    "Ünïcödé → 数学 ∑ x² 🙂 ﷽ ñ",
    "spaces:   three,    four;\ttab\t\ttwo tabs; trailing   ",
    "\n\nnew\nlines\n\n\n  indented\n",
    "  leading spaces",
    "text with a control token <|im_end|> inside",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compute \\frac{6}{3}."}],
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "It is 4. \\boxed{4}"}],
    [
        {"role": "system", "content": "You solve equations."},
        {"role": "user", "content": "Solve 3x + 7 = 22."},
        {"role": "assistant", "content": "3x = 15\nx = 5 ✓"},
        {"role": "user", "content": "Ünïcödé:   数学?"},
        {"role": "assistant", "content": "  Spaces  and\n\nnew lines  "},
    ],
    [
        {"role": "user", "content": "Call a tool."},
        {"role": "assistant", "content": "Calling.", "tool_calls": [{"name": "f", "arguments": {"x": "ünï"}}]},
    ],
]


def _corpus():
    lines = []
    for a in range(12):
        for b in range(12):
            lines.append(f"The sum of {a} and {b} is {a + b}. Let x = \\frac{{{a}}}{{{b + 1}}} so \\boxed{{{a * b}}}.")
    lines += [t for t in TEXTS if t] + [m["content"] for c in CONVERSATIONS for m in c]
    lines += ["You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "system user assistant"]
    return lines


def _byte_level_bpe(split: str, specials: list[str], bos: str | None = None) -> RawTokenizer:
    tok = RawTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if bos is None:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return tok


def _save(tmp, raw, template, generation_eos, **tokens):
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, **tokens)
    fast.chat_template = template
    fast.save_pretrained(tmp)
    eos = [raw.token_to_id(t) for t in generation_eos]
    (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": eos if len(eos) > 1 else eos[0]}))
    return transformers.AutoTokenizer.from_pretrained(tmp)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """Qwen2.5-Math-base-like: no bos, eos <|endoftext|> (the chat turn ends with <|im_end|>)."""
    tmp = tmp_path_factory.mktemp("qwen")
    raw = _byte_level_bpe(QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    ref = _save(tmp, raw, QWEN_TEMPLATE, ["<|endoftext|>"], eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tmp, ref


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """Llama-3-instruct-like: bos added by the post-processor, eos <|eot_id|>, three stop ids."""
    tmp = tmp_path_factory.mktemp("llama")
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>"]
    raw = _byte_level_bpe(LLAMA_SPLIT, [*specials, "<|eot_id|>"], bos="<|begin_of_text|>")
    stops = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]
    ref = _save(tmp, raw, LLAMA_TEMPLATE, stops, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    return tmp, ref


@pytest.fixture(params=["qwen", "llama"])
def hf(request):
    tmp, ref = request.getfixturevalue(request.param)
    return Tokenizer.load(tmp), ref, tmp


def test_hf_encode_and_decode_match_transformers(hf):
    tok, ref, _ = hf
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == len(ref)
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == ref.encode(text, add_special_tokens=False), text
        assert tok.encode_prompt(text) == ref.encode(text), text  # the post-processor's bos, nothing else
        assert tok.decode(ids) == text == ref.decode(ids, clean_up_tokenization_spaces=False)
    assert tok.encode_response("x = 5") == tok.encode("x = 5") + [tok.eos_id]
    # out-of-vocabulary ids (a model's padded vocab), pad, bos and eos have no text
    hello = tok.encode("hello")
    assert tok.decode([*tok.encode_prompt("hello"), tok.pad_id, *tok.eos_ids, tok.vocab_size + 5]) == "hello"
    assert tok.decode(hello + tok.encode("<|im_end|>")) == "hello<|im_end|>"  # other specials are written out
    assert tok.garbage_ids() == frozenset()  # byte-level: no fallback ids (see HFTokenizer.garbage_ids)


def test_special_ids_come_from_the_config_files(qwen, llama):
    q, ll = Tokenizer.load(qwen[0]), Tokenizer.load(llama[0] / "tokenizer.json")
    qid, lid = q.token_id, ll.token_id
    assert q.bos_id is None and q.eos_id == qid("<|endoftext|>") == q.pad_id and q.eos_ids == (q.eos_id,)
    assert ll.bos_id == lid("<|begin_of_text|>") and ll.eos_id == lid("<|eot_id|>") == ll.pad_id  # no pad: eos
    assert ll.eos_ids == (lid("<|eot_id|>"), lid("<|end_of_text|>"), lid("<|eom_id|>"))  # + generation_config's
    assert set(q.control_tokens) == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    assert chat.stop_ids(q, "plain") == q.eos_ids
    assert chat.stop_ids(q, "chat") == (q.eos_id, qid("<|im_end|>"))  # the base model's turn ends with im_end
    assert chat.stop_ids(ll, "chat") == ll.eos_ids


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_chat_rendering_and_ids_match_apply_chat_template(hf, generation_prompt):
    tok, ref, _ = hf
    for conversation in CONVERSATIONS:
        text = chat.render(tok, conversation, add_generation_prompt=generation_prompt)
        assert text == ref.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
        ids = chat.encode_chat(tok, conversation, add_generation_prompt=generation_prompt)
        assert ids == ref(text, add_special_tokens=False)["input_ids"]
        assert ids.count(tok.bos_id) == (1 if tok.bos_id is not None else 0)  # bos written once, by the template


def test_the_loss_mask_covers_exactly_the_assistants_tokens(hf):
    tok, ref, _ = hf
    end = "<|im_end|>" if "<|im_end|>" in tok.control_tokens else "<|eot_id|>"
    for conversation in CONVERSATIONS:
        ids, mask = chat.encode_conversation(tok, conversation)
        assert len(ids) == len(mask) and ids == chat.encode_chat(tok, conversation)
        runs, run = [], []
        for i, m in zip(ids, mask, strict=True):
            if m:
                run.append(i)
            elif run:
                runs, run = [*runs, run], []
        runs += [run] if run else []
        replies = [m for m in conversation if m["role"] == "assistant"]
        expected = []
        for m in replies:
            content = m["content"] if end == "<|im_end|>" else m["content"].strip()
            if "tool_calls" in m and end == "<|im_end|>":
                content += "\n<tool_call>" + json.dumps(m["tool_calls"], ensure_ascii=False) + "</tool_call>"
            expected.append(content + end)
        assert [ref.decode(r, skip_special_tokens=False) for r in runs] == expected
        if end == "<|im_end|>":  # the template marks the same tokens with {% generation %}
            out = ref.apply_chat_template(conversation, return_dict=True, return_assistant_tokens_mask=True)
            assert out["input_ids"] == ids and out["assistant_masks"] == mask


def test_prompt_formats(qwen):
    tok, ref = Tokenizer.load(qwen[0]), qwen[1]
    problem = "Find x if 2x = \\frac{1}{2}."
    assert chat.format_prompt(tok, problem, "plain") == tok.encode_prompt(problem)
    user = [{"role": "user", "content": problem}]
    assert (
        chat.format_prompt(tok, problem, "chat")
        == ref.apply_chat_template(user, add_generation_prompt=True)["input_ids"]
    )
    cot = [{"role": "system", "content": chat.QWEN_MATH_COT_SYSTEM}, *user]
    assert chat.QWEN_MATH_COT_SYSTEM == "Please reason step by step, and put your final answer within \\boxed{}."
    prompt = chat.format_prompt(tok, problem, "qwen_math_cot")
    assert prompt == ref.apply_chat_template(cot, add_generation_prompt=True)["input_ids"]
    assert ref.decode(prompt) == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        f"<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
    )
    ids, mask = chat.format_example(tok, problem, "x = 1/4", "qwen_math_cot")
    assert ids[: len(prompt)] == prompt and not any(mask[: len(prompt)]) and all(mask[len(prompt) :])
    assert ref.decode(ids[len(prompt) :]) == "x = 1/4<|im_end|>"
    ids, mask = chat.format_example(tok, problem, "x = 1/4", "plain")
    plain = tok.encode_prompt(problem)
    assert ids == plain + tok.encode_response("x = 1/4") and mask == [0] * len(plain) + [1] * (len(ids) - len(plain))
    with pytest.raises(chat.ChatTemplateError, match="unknown prompt format 'cot'; known: plain, chat, qwen_math_cot"):
        chat.format_prompt(tok, problem, "cot")


def test_template_errors_are_one_line(llama, qwen):
    tok = Tokenizer.load(llama[0])
    with pytest.raises(chat.ChatTemplateError, match="roles must be user or assistant, not tool"):
        chat.render(tok, [{"role": "tool", "content": "x"}])
    with pytest.raises(chat.ChatTemplateError, match="does not compile"):
        chat.render(tok, [], template="{% if %}")
    with pytest.raises(chat.ChatTemplateError, match="underscore"):  # the sandbox
        chat.render(tok, [], template="{% set ns = namespace(_x=1) %}")
    with pytest.raises(chat.ChatTemplateError, match="unsafe|not safely"):
        chat.render(tok, [], template="{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}")
    rewriting = "{% for m in messages %}{{ m.content if loop.last else '-' }}{% endfor %}"
    with pytest.raises(chat.ChatTemplateError, match="as a continuation"):
        chat.encode_conversation(tok, CONVERSATIONS[3], template=rewriting)


def test_save_copies_every_file_and_run_directories_find_either_kind(qwen, tmp_path):
    source, _ = qwen
    tok = Tokenizer.load(source / "tokenizer.json")
    names = sorted(p.name for p in source.iterdir())
    assert names == ["chat_template.jinja", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    run = tmp_path / "run"
    save_run_tokenizer(tok, run)
    assert all((run / n).read_bytes() == (source / n).read_bytes() for n in names)
    assert has_tokenizer(run) and isinstance(run_tokenizer(run), HFTokenizer)
    assert run_tokenizer(tmp_path / "elsewhere", str(source)).eos_ids == tok.eos_ids
    tok.save(tmp_path / "old" / "tokenizer.model")  # the callers' path of a run's tokenizer: same directory
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == names
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no tokenizer in .*empty \(no tokenizer.json or tokenizer.model\)"):
        run_tokenizer(tmp_path / "empty")
    with pytest.raises(DataError, match="no tokenizer.json or tokenizer.model in .*empty"):
        Tokenizer.load(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json is not a Hugging Face tokenizer.json"):
        Tokenizer.load(tmp_path / "bad.json")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    with pytest.raises(DataError, match="no eos token"):
        Tokenizer.load(tmp_path / "cfg")
    (tmp_path / "cfg" / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(DataError, match="cfg/tokenizer_config.json is not valid JSON"):
        Tokenizer.load(tmp_path / "cfg")


def test_byte_fallback_bpe_counts_its_byte_pieces_as_garbage():
    vocab = {"<unk>": 0, "</s>": 1, **{f"<0x{b:02X}>": 2 + b for b in range(256)}, "a": 258, "b": 259, "ab": 260}
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=[("a", "b")], byte_fallback=True, unk_token="<unk>"))
    raw.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok = HFTokenizer(raw.to_str(), files=TokenizerFiles({"tokenizer_config.json": b'{"eos_token": "</s>"}'}))
    assert tok.garbage_ids() == frozenset(range(0, 258)) - {1}
    assert tok.encode("abé") == [260, 2 + 0xC3, 2 + 0xA9] and tok.decode(tok.encode("abé")) == "abé"


# --- sentencepiece -------------------------------------------------------------------------------


def test_our_sentencepiece_tokenizer_is_sentencepiece_itself(tmp_path):
    """What SFT trains: the same ids, template and special ids as sentencepiece gives directly."""
    tok = Tokenizer.train(_corpus(), vocab_size=400)
    assert isinstance(tok, SentencePieceTokenizer)
    tok.save(str(tmp_path / "t.model"))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "t.model"))
    assert (
        (tok.pad_id, tok.bos_id, tok.eos_id, tok.eos_ids)
        == (0, 2, 3, (3,))
        == (
            sp.pad_id(),
            sp.bos_id(),
            sp.eos_id(),
            (sp.eos_id(),),
        )
    )
    assert tok.vocab_size == sp.GetPieceSize()
    for text in TEXTS:
        ids = sp.EncodeAsIds(text)
        assert tok.encode(text) == ids and tok.decode(ids) == sp.DecodeIds(ids) == text
        assert tok.encode_prompt(text) == [2, *ids] and tok.encode_response(text) == [*ids, 3]
    assert tok.decode([2, 5, 900, -1, 3]) == sp.DecodeIds([2, 5, 3])
    assert tok.garbage_ids() == frozenset(i for i in range(sp.GetPieceSize()) if sp.IsByte(i) or sp.IsUnknown(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.model"]  # nothing else is written
    assert Tokenizer.load(str(tmp_path / "t.model")).encode("x = 5") == tok.encode("x = 5")
    assert chat.format_prompt(tok, "x = 5", "plain") == tok.encode_prompt("x = 5")
    with pytest.raises(chat.ChatTemplateError, match="'chat' needs a tokenizer with a chat template"):
        chat.format_prompt(tok, "x = 5", "chat")


def test_gemma_like_sentencepiece_model_inserts_control_tokens_by_id(tmp_path):
    """Gemma's tokenizer.model: <start_of_turn> and <end_of_turn> are control pieces, which
    sentencepiece never produces from text; its files give the chat template and stop ids."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buffer,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        control_symbols=["<start_of_turn>", "<end_of_turn>"],
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "tokenizer.model").write_bytes(buffer.getvalue())
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "chat_template": GEMMA_TEMPLATE}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 5]}))
    tok = Tokenizer.load(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    start, end = sp.PieceToId("<start_of_turn>"), sp.PieceToId("<end_of_turn>")
    assert isinstance(tok, SentencePieceTokenizer) and (start, end) == (4, 5)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.eos_ids) == (2, 1, 0, (1, 5))
    assert sp.EncodeAsIds("<start_of_turn>") != [start]  # its text is not the token
    for conversation in CONVERSATIONS[:4]:
        for generation_prompt in (False, True):
            text = chat.render(tok, conversation, add_generation_prompt=generation_prompt)
            reference, _ = render_jinja_template(
                [conversation],
                chat_template=GEMMA_TEMPLATE,
                add_generation_prompt=generation_prompt,
                **{"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
            )
            assert text == reference[0]
        ids, mask = chat.encode_conversation(tok, conversation)
        expected = [2]  # control tokens by id; the assistant's text encoded apart from its header
        for m in conversation:
            turn = ["model\n", m["content"].strip()] if m["role"] == "assistant" else [f"{m['role']}\n{m['content']}"]
            expected += [start, *(i for part in turn for i in sp.EncodeAsIds(part)), end, *sp.EncodeAsIds("\n")]
        assert ids == expected
        assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "".join(
            m["content"].strip() for m in conversation if m["role"] == "assistant"
        )
    assert chat.stop_ids(tok, "chat") == (1, 5)
    saved = tmp_path / "saved"
    tok.save(saved)
    assert sorted(p.name for p in saved.iterdir()) == [
        "generation_config.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
