"""Multi-turn conversations and stop sequences in workers.ml.textgen (what the OpenAI-compatible
chat endpoint asks of a textgen job). Plain pytest, no database."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from workers.ml.textgen import StopText, build_prompt  # noqa: E402

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye?"},
]


def feed(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    cut = StopText(stops)
    out = "".join(cut.feed(p) for p in pieces) + cut.flush()
    return out, cut.hit


@pytest.mark.parametrize(
    ("pieces", "text", "hit"),
    [
        (["Hello wor", "ld. The", " end"], "Hello ", True),  # a stop split over pieces
        (["Hello", " END", " more"], "Hello", True),
        (["Hello w", "ide"], "Hello wide", False),  # held back, then let go
        (["Hello w"], "Hello w", False),  # the text ended while a prefix was held back
        (["wo", "rld"], "", True),
        (["abc"], "abc", False),
    ],
)
def test_stop_sequences_cut_the_text_before_the_first_one_even_across_pieces(pieces, text, hit):
    assert feed(["world", " END"], pieces) == (text, hit)


def test_nothing_past_a_stop_is_handed_on_and_no_stop_passes_text_through():
    cut = StopText(["\n\n"])
    assert cut.feed("one\n") == "one"
    assert cut.feed("\ntwo") == ""
    assert cut.feed("three") == "" and cut.flush() == ""
    assert feed([], ["a", "b"]) == ("ab", False)


def test_a_conversation_is_rendered_with_the_chat_template_over_every_turn(tmp_path):
    from transformers import AutoTokenizer

    from workers.ml.models import build_tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "tiny", seed=0))
    prompt = build_prompt(tokenizer, "ignored", messages=CONVERSATION)
    assert prompt == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n"
        "<|user|>\nBye?</s>\n<|assistant|>\n"
    )
    # Without a chat template: a plain transcript that leaves the assistant to answer.
    plain = build_prompt(tokenizer, "ignored", messages=CONVERSATION, use_chat_template=False)
    assert plain == "Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Bye?\n\nAssistant:"
