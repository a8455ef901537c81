"""Tokenizer, JSONL reading, SFT encoding and the resumable batch iterator."""

import json

import numpy as np
import pytest

from t1jax.data.jsonl import read_jsonl
from t1jax.data.sft_batches import EncodedExamples, batch_stream, encode_examples
from t1jax.data.synthesis import sft_examples
from t1jax.data.tokenizer import Tokenizer
from t1jax.errors import DataError


@pytest.fixture(scope="module")
def tokenizer():
    examples = sft_examples("countdown", "train", 300, seed=0)
    return Tokenizer.train((e[k] for e in examples for k in ("prompt", "response")), vocab_size=320)


def test_tokenizer_round_trips_task_text_and_any_unicode(tokenizer, tmp_path):
    for example in sft_examples("linear_equation", "train", 20, seed=1):
        text = example["prompt"] + example["response"]
        assert tokenizer.decode(tokenizer.encode(text)) == text
    unicode = "Ünïcödé → 数学 ∑ x² 🙂\ttabs  and  spaces"
    assert tokenizer.decode(tokenizer.encode(unicode)) == unicode  # byte fallback
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 2, 3)
    tokenizer.save(str(tmp_path / "t.model"))
    loaded = Tokenizer.load(str(tmp_path / "t.model"))
    assert loaded.encode("Add 12 and 7.") == tokenizer.encode("Add 12 and 7.")
    (tmp_path / "junk.model").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.model is not a sentencepiece model"):
        Tokenizer.load(str(tmp_path / "junk.model"))


def test_loss_mask_covers_exactly_the_response(tokenizer):
    examples = [
        {"prompt": "Add 1 and 2.\n", "response": "Answer: 3"},
        {"prompt": "Add 5 and 5.\n", "response": "x" * 200},
    ]
    encoded = encode_examples(examples, tokenizer, seq_len=24)
    prompt = [tokenizer.bos_id] + tokenizer.encode(examples[0]["prompt"])
    response = tokenizer.encode(examples[0]["response"]) + [tokenizer.eos_id]
    n = len(prompt) + len(response)
    np.testing.assert_array_equal(encoded.tokens[0, :n], prompt + response)
    assert (encoded.tokens[0, n:] == tokenizer.pad_id).all()
    expected_mask = np.zeros(25, np.int32)
    expected_mask[len(prompt) : n] = 1
    np.testing.assert_array_equal(encoded.loss_mask[0], expected_mask)
    assert encoded.num_truncated == 1 and encoded.loss_mask[1, -1] == 1


def _data(n):
    tokens = np.arange(n, dtype=np.int32)[:, None] * np.ones((1, 3), np.int32)
    return EncodedExamples(tokens, np.ones_like(tokens), 0, np.full(n, 3, np.int32))


def _first_column(batch):
    return batch["tokens"][:, 0].tolist()


def test_stream_resumes_exactly_and_crosses_epochs():
    stream = iter(batch_stream(_data(10), batch_size=4, seed=1))
    for _ in range(3):
        next(stream)
    state = stream.get_state()
    expected = [_first_column(next(stream)) for _ in range(5)]
    resumed = iter(batch_stream(_data(10), batch_size=4, seed=1))
    resumed.set_state(state)
    assert [_first_column(next(resumed)) for _ in range(5)] == expected
    # every epoch visits every example once, in a new order each epoch
    fresh = iter(batch_stream(_data(10), batch_size=5, seed=2))
    epochs = [_first_column(next(fresh)) + _first_column(next(fresh)) for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(10)) and epochs[0] != epochs[1]


def test_process_shards_are_disjoint_and_cover_the_batch():
    whole = iter(batch_stream(_data(16), batch_size=8, seed=3))
    parts = [iter(batch_stream(_data(16), batch_size=8, seed=3, process_index=i, process_count=2)) for i in range(2)]
    for _ in range(4):
        full = _first_column(next(whole))
        a, b = (_first_column(next(p)) for p in parts)
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert sorted(a + b) == sorted(full)


def test_jsonl_errors_name_file_and_line(tmp_path):
    good = {"prompt": "p", "response": "r"}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + "{not json\n")
    with pytest.raises(DataError, match=r"d.jsonl, line 3: not valid JSON"):
        read_jsonl(str(path), ("prompt", "response"))
    path.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(DataError, match=r"line 2: missing field 'response' \(has: prompt\)"):
        read_jsonl(str(path), ("prompt", "response"))
    path.write_text(json.dumps([1, 2]) + "\n")
    with pytest.raises(DataError, match="line 1: expected a JSON object, got list"):
        read_jsonl(str(path), ("prompt",))
    with pytest.raises(DataError, match="data file not found"):
        read_jsonl(str(tmp_path / "missing.jsonl"), ("prompt",))
    path.write_text(json.dumps(good) + "\n")
    assert read_jsonl(str(path), ("prompt", "response")).records == [good]


def test_jsonl_bad_lines_are_skipped_and_counted_unless_strict(tmp_path):
    good = {"prompt": "p", "response": "r"}
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps(good), "{oops", json.dumps({"prompt": "x"}), json.dumps(good)]) + "\n")
    data = read_jsonl(str(path), ("prompt", "response"), strict=False)
    assert data.records == [good, good] and data.line_numbers == [1, 4]
    assert [n for n, _ in data.skipped] == [2, 3] and "missing field 'response'" in data.skipped[1][1]
    assert "2 records; skipped 2 bad lines (2, 3)" in data.summary()
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_jsonl(str(path), ("prompt", "response"), strict=True)


def test_rl_prompt_stream_resumes_and_shards():
    from t1jax.data.rl_prompts import prompt_stream

    problems = [{"id": i, "answer": str(i * i)} for i in range(12)]
    stream = iter(prompt_stream(problems, 4, seed=0))
    next(stream)
    state = stream.get_state()
    expected = [[p["id"] for p in next(stream)] for _ in range(4)]
    resumed = iter(prompt_stream(problems, 4, seed=0))
    resumed.set_state(state)
    assert [[p["id"] for p in next(resumed)] for _ in range(4)] == expected
    whole = iter(prompt_stream(problems, 4, seed=1))
    parts = [iter(prompt_stream(problems, 4, seed=1, process_index=i, process_count=2)) for i in range(2)]
    for _ in range(3):
        full = sorted(p["id"] for p in next(whole))
        a, b = ([p["id"] for p in next(part)] for part in parts)
        assert not set(a) & set(b) and sorted(a + b) == full


def test_benchmark_loaders(tmp_path):
    from t1jax.data.benchmarks import BOXED_INSTRUCTION, benchmarks_dir, load_benchmark

    if not (benchmarks_dir() / "math500.jsonl").is_file():
        pytest.skip("shared benchmarks not present")
    sizes = {name: len(load_benchmark(name)) for name in ("math500", "gsm8k", "aime24")}
    assert sizes == {"math500": 500, "gsm8k": 1319, "aime24": 30}
    row = load_benchmark("aime24")[0]
    assert row["prompt"].endswith(BOXED_INSTRUCTION + "\n") and row["problem"] in row["prompt"] and row["answer"]
    custom = tmp_path / "mine.jsonl"
    custom.write_text(json.dumps({"q": "1+1?", "a": 2}) + "\n" + json.dumps({"q": "2+2?"}) + "\n")
    rows = load_benchmark(str(custom), problem_field="q", answer_field="a", strict=False)
    assert rows == [{"id": "1", "problem": "1+1?", "answer": "2", "prompt": "1+1?\n" + BOXED_INSTRUCTION + "\n"}]
    with pytest.raises(DataError, match="mine.jsonl, line 2: missing field 'a'"):
        load_benchmark(str(custom), problem_field="q", answer_field="a")


def test_existing_sentencepiece_models_load_through_the_same_interface(tmp_path):
    """A model trained with Llama-2's special-id layout (unk 0, bos 1, eos 2, no pad)."""
    import io

    import sentencepiece as spm

    buffer = io.BytesIO()
    texts = [e["prompt"] + e["response"] for e in sft_examples("countdown", "train", 200, seed=0)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "tokenizer.model").write_bytes(buffer.getvalue())
    tok = Tokenizer.load(str(tmp_path / "tokenizer.model"))
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 0)
    ids = tok.encode_prompt("Make 10 from 2, 5.") + tok.encode_response("2*5")
    assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids) == "Make 10 from 2, 5. 2*5"  # Llama-style dummy prefix


def test_the_benchmarks_ship_with_the_package_intact():
    """MATH500, GSM8K test and AIME 2024 are package data: their rows and their files' SHA-256 as
    recorded in benchmark_sets/README.md."""
    import hashlib
    import re

    from t1jax.data.benchmarks import benchmarks_dir, load_benchmark

    readme = (benchmarks_dir() / "README.md").read_text()
    for name, rows in (("math500", 500), ("gsm8k", 1319), ("aime24", 30)):
        digest = hashlib.sha256((benchmarks_dir() / f"{name}.jsonl").read_bytes()).hexdigest()
        assert re.search(rf"{digest}\s+{name}\.jsonl", readme), name
        loaded = load_benchmark(name)
        assert len(loaded) == rows and all(row["problem"] and row["answer"] for row in loaded)


def test_a_vocabulary_too_small_for_the_bytes_is_a_data_error():
    """Byte fallback needs 256 byte pieces and the specials: fewer is the user's model.vocab_size."""
    import pytest

    from t1jax.data.tokenizer import Tokenizer
    from t1jax.errors import DataError

    with pytest.raises(DataError, match=r"cannot train a tokenizer of 100 pieces \(model.vocab_size\)"):
        Tokenizer.train([f"{a} + {a} = {2 * a}" for a in range(100)], 100)
