"""Version statistics: rows, exact duplicates, length histogram (chars or tokens), language mix."""

from __future__ import annotations

import itertools

import pytest

from tests.data.import_samples import openai_chats, write_jsonl
from workers.data import import_file
from workers.data.stats import compute, language_of


def _version(tmp_path, records, name="qa.jsonl"):
    path = write_jsonl(tmp_path / name, records)
    return import_file(path, path.name, out_dir=tmp_path / f"out-{name}").canonical_path


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("头痛怎么办?多休息。", "cjk"),
        ("How do I sleep better?", "latin"),
        ("Привет, как дела?", "other"),
        ("12345 !!!", "other"),
        ("请问 blood pressure 高怎么办", "cjk"),
        ("what does 高 mean in this sentence", "latin"),
        ("こんにちは", "cjk"),
        ("Café crème brûlée", "latin"),
    ],
)
def test_language_of_counts_character_classes(text, language):
    assert language_of(text) == language


def test_it_counts_rows_duplicates_languages_and_lengths_in_characters(tmp_path):
    records = [{"question": f"问题{i}", "answer": "回答" * (i + 1)} for i in range(20)]
    records += [{"question": f"question {i}", "answer": "an answer"} for i in range(10)]
    records += [records[0], records[0], records[25]]  # three exact duplicates
    records += [{"question": "Что?", "answer": "Да."}]
    stats = compute(_version(tmp_path, records), "qa")
    assert stats["rows"] == 34
    assert stats["duplicates"] == 3
    assert stats["languages"]["cjk"] == {"rows": 22, "share": round(22 / 34, 4)}
    assert stats["languages"]["latin"]["rows"] == 11
    assert stats["languages"]["other"]["rows"] == 1
    length = stats["length"]
    assert length["unit"] == "chars"
    texts = [f"{r['answer']}\n{r['question']}" for r in records]
    assert length["max"] == max(map(len, texts))
    assert length["min"] == min(map(len, texts))
    assert length["total"] == sum(map(len, texts))
    hist = length["histogram"]
    assert 1 <= len(hist) <= 16
    assert sum(b["count"] for b in hist) == 34
    assert all(a["max"] < b["min"] for a, b in itertools.pairwise(hist))
    assert hist[0]["min"] <= length["min"] and hist[-1]["max"] >= length["max"]
    assert stats["fields"]["answer"]["max_chars"] == 40
    assert stats["fields"]["question"]["max_chars"] == len("question 9")


def test_a_long_tail_goes_into_the_last_bucket(tmp_path):
    records = [{"question": f"q{i}", "answer": "x" * (10 + i % 50)} for i in range(300)]
    records.append({"question": "long", "answer": "y" * 100_000})
    hist = compute(_version(tmp_path, records), "qa", buckets=12)["length"]["histogram"]
    assert len(hist) == 12
    assert hist[-1]["count"] >= 1 and hist[-1]["max"] >= 100_000
    assert hist[-2]["max"] < 1000  # the regular buckets are sized for the bulk, not the outlier


def test_lengths_in_tokens_with_an_encode_only_tokenizer(tmp_path):
    class Words:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    records = [
        {"question": "one two three", "answer": "four five"},
        {"question": "a", "answer": "b"},
    ]
    stats = compute(_version(tmp_path, records), "qa", tokenizer=Words())
    assert stats["length"]["unit"] == "tokens"
    assert (stats["length"]["max"], stats["length"]["min"], stats["length"]["total"]) == (5, 2, 7)


def test_lengths_in_tokens_with_a_transformers_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "你": 3, "好": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Split("", "isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    expected = [len(tokenizer("hello world\n你好", add_special_tokens=False)["input_ids"])]
    records = [{"question": "你好", "answer": "hello world"}]
    stats = compute(_version(tmp_path, records), "qa", tokenizer=tokenizer)
    assert stats["length"]["unit"] == "tokens"
    assert stats["length"]["max"] == expected[0] > 0


def test_chat_stats_count_turns_and_message_text(tmp_path):
    stats = compute(_version(tmp_path, openai_chats(), "chat.jsonl"), "chat")
    assert stats["rows"] == 2
    assert stats["mean_turns"] == 3.5
    assert stats["fields"]["messages"]["max_chars"] > 0


def test_an_empty_version_has_zero_stats(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    stats = compute(empty, "qa")
    assert stats["rows"] == 0 and stats["duplicates"] == 0 and stats["length"]["histogram"] == []


def test_bucket_counts_outside_ten_to_twenty_are_refused(tmp_path):
    with pytest.raises(ValueError):
        compute(tmp_path / "x.jsonl", "qa", buckets=5)
