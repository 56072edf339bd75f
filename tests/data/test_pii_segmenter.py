"""The segmenter the PII name finder uses (rjieba, jieba in Rust) cuts as jieba does, and the
dictionary it reads is jieba's: the name rules were tuned on jieba's cuts and counts."""

from __future__ import annotations

import random
import re

import pytest

from tests.data.pii_eval.generate import generate
from tests.data.pii_holdout.score import load
from workers.data import pii_names

jieba = pytest.importorskip("jieba")


@pytest.fixture(scope="module")
def reference():
    import jieba.posseg

    jieba.setLogLevel(60)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    tags = jieba.posseg.POSTokenizer(tokenizer).word_tag_tab
    return tokenizer, tags


def _windows() -> list[str]:
    """Chinese runs of the evaluation set (both halves) and the hold-out, whole and cut the way
    the name finder cuts its windows (a few characters either side of a candidate)."""
    texts = [r.text for half in ("dev", "test") for r in generate(half, 600, 3)]
    texts += [r.text for r in load()]
    r = random.Random(4)
    windows = []
    for text in texts:
        for run in re.findall("[一-鿿]{2,}", text):
            windows.append(run)
            at = r.randrange(len(run))
            windows.append(run[max(0, at - pii_names.FREE_CONTEXT) : at + pii_names.FREE_CONTEXT])
    return windows


def test_the_segmenter_cuts_every_window_as_jieba_does(reference):
    tokenizer, _ = reference
    ours = pii_names._segmenter()[0]
    windows = _windows()
    assert len(windows) > 5000
    for hmm in (True, False):
        differ = [w for w in windows if ours.cut(w, hmm) != list(tokenizer.cut(w, HMM=hmm))]
        assert differ == [], (hmm, differ[:5])


def test_the_frequencies_and_tags_are_jiebas(reference):
    tokenizer, tags = reference
    _, freq, our_tags, _ = pii_names._segmenter()
    assert our_tags == tags
    words = {w: c for w, c in tokenizer.FREQ.items() if c}  # jieba adds prefixes with count 0
    assert {w: c for w, c in freq.items() if c} == words
    assert freq["李白"] == tokenizer.FREQ["李白"] > 100
