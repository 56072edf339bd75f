"""The pure moderation engine (workers/moderation): rules, validation, both engines, defaults."""

import json
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workers.moderation import (
    CATEGORIES,
    SEVERITIES,
    Rule,
    RuleError,
    ScanResult,
    available_engines,
    compile_rules,
    default_rules,
    validate_rule,
)

HAVE_HYPERSCAN = "hyperscan" in available_engines()
ENGINES = [
    pytest.param(
        "hyperscan",
        marks=pytest.mark.skipif(not HAVE_HYPERSCAN, reason="hyperscan is not usable here"),
    ),
    "re2",
]


def keyword(pattern, *, id="k", category="custom", severity="flag", case_sensitive=False):
    return Rule(id, "keyword", pattern, category, severity, case_sensitive)


def regex(pattern, *, id="r", category="custom", severity="flag", case_sensitive=False):
    return Rule(id, "regex", pattern, category, severity, case_sensitive)


def spans(matcher, text):
    return [(h.rule_id, h.start, h.end, h.text) for h in matcher.scan(text).hits]


# --- keywords ----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_english_keywords_match_whole_words_only(engine):
    m = compile_rules([keyword("ass")], engine=engine)

    assert spans(m, "class assignment, bass, assess") == []
    assert spans(m, "what an ass.") == [("k", 8, 11, "ass")]
    assert spans(m, "Ass") == [("k", 0, 3, "Ass")]


@pytest.mark.parametrize("engine", ENGINES)
def test_english_keywords_match_beside_chinese_characters(engine):
    m = compile_rules([keyword("scam")], engine=engine)

    assert spans(m, "这是scam吗") == [("k", 2, 6, "scam")]


@pytest.mark.parametrize("engine", ENGINES)
def test_chinese_keywords_match_inside_longer_words(engine):
    m = compile_rules([keyword("色情")], engine=engine)

    assert spans(m, "这是色情内容，色情片") == [("k", 2, 4, "色情"), ("k", 7, 9, "色情")]


@pytest.mark.parametrize("engine", ENGINES)
def test_keywords_ignore_case_unless_case_sensitive(engine):
    m = compile_rules(
        [keyword("Acme", id="any"), keyword("NASA", id="exact", case_sensitive=True)],
        engine=engine,
    )

    assert [h.rule_id for h in m.scan("ACME and acme").hits] == ["any", "any"]
    assert [h.rule_id for h in m.scan("nasa Nasa").hits] == []
    assert [h.rule_id for h in m.scan("NASA").hits] == ["exact"]


@pytest.mark.parametrize("engine", ENGINES)
def test_case_folding_covers_accented_and_cyrillic_letters(engine):
    m = compile_rules([keyword("café"), regex("дом", id="ru")], engine=engine)

    assert spans(m, "CAFÉ ДОМ") == [("k", 0, 4, "CAFÉ"), ("ru", 5, 8, "ДОМ")]


@pytest.mark.parametrize("engine", ENGINES)
def test_spaces_in_a_keyword_match_any_run_of_whitespace(engine):
    m = compile_rules([keyword("kill yourself")], engine=engine)

    assert spans(m, "kill\n  yourself") == [("k", 0, 15, "kill\n  yourself")]
    assert spans(m, "kill\u3000yourself") == [("k", 0, 13, "kill\u3000yourself")]
    assert spans(m, "killyourself") == []


@pytest.mark.parametrize("engine", ENGINES)
def test_keyword_punctuation_is_literal(engine):
    m = compile_rules([keyword("a.b*c")], engine=engine)

    assert spans(m, "axbbc a.b*c") == [("k", 6, 11, "a.b*c")]


# --- regexes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_regex_spans_are_character_offsets_after_chinese_text(engine):
    m = compile_rules([regex(r"order [A-Z]{2}-\d{4,6}")], engine=engine)
    text = "您好，您的订单已发货。order ab-12345 已签收"

    assert spans(m, text) == [("r", 11, 25, "order ab-12345")]
    assert text[11:25] == "order ab-12345"


@pytest.mark.parametrize("engine", ENGINES)
def test_regexes_ignore_case_unless_case_sensitive(engine):
    m = compile_rules(
        [
            regex(r"secret\d", id="any"),
            regex(r"TOKEN_\w+", id="exact", case_sensitive=True),
            regex(r"(?i)inline\d", id="inline", case_sensitive=True),
        ],
        engine=engine,
    )

    assert [h.rule_id for h in m.scan("SECRET1 token_x INLINE2").hits] == ["any", "inline"]
    assert [h.rule_id for h in m.scan("TOKEN_x").hits] == ["exact"]


@pytest.mark.parametrize("engine", ENGINES)
def test_chinese_ranges_written_with_python_escapes_work(engine):
    m = compile_rules([regex(r"微信[:：]?\s*[\u4e00-\u9fffA-Za-z0-9_-]{4,}")], engine=engine)

    assert spans(m, "加我微信：abc_123 谢谢") == [("r", 2, 12, "微信：abc_123")]


@pytest.mark.parametrize("engine", ENGINES)
def test_word_classes_and_boundaries_are_ascii(engine):
    m = compile_rules([regex(r"\b\w+\b", id="w"), regex(r"\d+", id="d")], engine=engine)

    assert spans(m, "中文ab12 ４５") == [
        ("w", 2, 6, "ab12"),
        ("d", 4, 6, "12"),
    ]


PYTHON_REGEXES = [
    r"\b(?:buy|sell) (?:cheap )?(?:gold|coins?)\b",
    r"[A-Z]{2}-\d{4,6}",
    r"https?://[\w.-]+\.(?:com|cn)(?:/\S*)?",
    r"\b1[3-9]\d{9}\b",
    r"免费\s*领取",
    r"[^\s\d]{3}\d",
    r"a.c",
    r"(?s)x.y",
    r"(?m)^note:",
    r"colou?r",
    r"ab+?c",
    r"[\W_]{3,}",
    r"(?x) free \s+ money",
    r"\Aattention",
    r"(?i:AB)(?-i:cd)",
]
CORPUS = [
    "Buy cheap gold now! Visit http://spam.example.com/offer?id=1 or https://a.cn",
    "订单 AB-12345 已发货，手机13812345678，免费 领取礼品",
    "x\ny and x y, colour and color, abbbc, ac, a\nc, a-c",
    "Note: nothing here\nnote: line two\n---___!!!",
    "attention please: ABcd abCD abcd",
    "中文混合English文本，价格12元，编号cd-9999",
    "",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pattern", PYTHON_REGEXES)
def test_regexes_find_what_python_re_finds_with_ascii_classes(engine, pattern):
    m = compile_rules([regex(pattern)], engine=engine)
    flags = re.ASCII | re.IGNORECASE

    for text in CORPUS:
        expected = [("r", *x.span(), x.group()) for x in re.finditer(pattern, text, flags)]
        assert spans(m, text) == expected, text


@pytest.mark.parametrize("engine", ENGINES)
def test_dollar_is_the_end_of_the_text(engine):
    m = compile_rules([regex(r"thanks$")], engine=engine)

    assert spans(m, "many thanks") == [("r", 5, 11, "thanks")]
    assert spans(m, "thanks for the thanks!") == []


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "position", "words"),
    [
        ("abc(de", 3, "missing )"),
        ("a[b", 1, "unterminated character set"),
        ("x{3,1}", 2, "min repeat greater than max"),
        ("ab)", 2, "unbalanced parenthesis"),
        ("*a", 0, "nothing to repeat"),
    ],
)
def test_an_invalid_regex_is_refused_with_its_position(pattern, position, words):
    with pytest.raises(RuleError) as caught:
        validate_rule(regex(pattern, id=7))

    assert caught.value.position == position
    assert words in caught.value.message
    assert caught.value.rule_id == 7
    assert f"at position {position}" in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "position", "words"),
    [
        (r"(a)\1", 3, "backreferences"),
        (r"(?P<w>a)(?P=w)", 8, "backreferences"),
        (r"foo(?=bar)", 3, "look-ahead"),
        (r"(?<!un)safe", 0, "look-behind"),
        (r"(?>ab)c", 0, "atomic"),
        (r"ab++", 3, "possessive"),
    ],
)
def test_constructs_that_need_backtracking_are_refused(pattern, position, words):
    with pytest.raises(RuleError) as caught:
        validate_rule(regex(pattern))

    assert words in caught.value.message
    assert caught.value.position == position


def test_a_regex_nested_too_deeply_is_refused():
    with pytest.raises(RuleError, match="nested too deeply"):
        validate_rule(regex("(" * 499 + "a" + ")" * 499))


@pytest.mark.parametrize("pattern", ["a*", r"\b", "x|", "(?:abc)?", r"\s*"])
def test_a_regex_that_matches_empty_text_is_refused(pattern):
    with pytest.raises(RuleError, match="matches empty text"):
        validate_rule(regex(pattern))


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (Rule(1, "glob", "x", "custom", "flag"), "unknown kind"),
        (Rule(1, "keyword", "x", "spam", "flag"), "unknown category"),
        (Rule(1, "keyword", "x", "custom", "warn"), "unknown severity"),
        (Rule(1, "keyword", "  ", "custom", "flag"), "empty pattern"),
        (Rule(1, "regex", "", "custom", "flag"), "empty pattern"),
        (Rule(1, "keyword", "x" * 1001, "custom", "flag"), "longer than 1000"),
        (Rule(1, "regex", "a{1001}", "custom", "flag"), "repetition"),
    ],
)
def test_rules_the_engine_cannot_use_are_refused(rule, words):
    with pytest.raises(RuleError, match=words):
        validate_rule(rule)


def test_errors_name_the_field_before_the_colon():
    """apps/moderation reads the field (kind, category, severity, else pattern) from the message."""
    with pytest.raises(RuleError) as caught:
        validate_rule(Rule(1, "keyword", "x", "spam", "flag"))
    assert "category" in caught.value.message.split(":")[0]
    with pytest.raises(RuleError) as caught:
        validate_rule(regex("abc(de"))
    assert not {"kind", "category", "severity"} & set(caught.value.message.split(":")[0].split())


@pytest.mark.parametrize("engine", ENGINES)
def test_compile_rules_names_the_first_bad_rule(engine):
    rules = [keyword("fine", id=1), regex("(a)\\1", id=2), regex("[", id=3)]

    with pytest.raises(RuleError) as caught:
        compile_rules(rules, engine=engine)

    assert caught.value.rule_id == 2
    assert str(caught.value).startswith("rule 2: ")


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown moderation engine"):
        compile_rules([keyword("x")], engine="pcre")


def test_auto_uses_the_best_engine_here():
    assert compile_rules([keyword("x")]).engine == available_engines()[0]


# --- linear time -------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_pathological_regex_finishes_and_gives_the_right_answer(engine):
    m = compile_rules([regex("(a+)+$")], engine=engine)

    assert m.scan("a" * 100_000 + "!").hits == ()
    [hit] = m.scan("a" * 100_000).hits
    assert (hit.start, hit.end) == (0, 100_000)
    assert hit.text == "a" * 200


# --- results -----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_block_beats_flag(engine):
    m = compile_rules(
        [keyword("rude", id="f"), keyword("bomb recipe", id="b", severity="block")],
        engine=engine,
    )

    assert m.scan("nothing").severity is None
    assert m.scan("rude").severity == "flag"
    result = m.scan("a rude bomb recipe")
    assert result.severity == "block"
    assert [h.rule_id for h in result.hits] == ["f", "b"]


@pytest.mark.parametrize("engine", ENGINES)
def test_max_hits_caps_the_hits_but_keeps_every_rule_that_matched(engine):
    m = compile_rules(
        [
            keyword("spam", id="s", category="custom"),
            keyword("csam", id="c", category="sexual/minors", severity="block"),
            keyword("ham", id="h", category="harassment"),
        ],
        engine=engine,
    )
    text = "spam " * 100 + "ham csam"

    result = m.scan(text, max_hits=5)

    assert len(result.hits) == 5
    assert result.severity == "block"
    assert result.categories == ("custom", "harassment", "sexual/minors")
    assert [h.start for h in result.hits] == sorted(h.start for h in result.hits)
    assert len(m.scan(text).hits) == 50


@pytest.mark.parametrize("engine", ENGINES)
def test_hits_report_at_most_200_characters_of_text(engine):
    m = compile_rules([regex(r"x{10,}")], engine=engine)

    [hit] = m.scan("y" + "x" * 1000).hits

    assert (hit.start, hit.end, len(hit.text)) == (1, 1001, 200)


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_and_odd_texts(engine):
    m = compile_rules([keyword("bad")], engine=engine)

    assert m.scan("") == ScanResult(())
    assert m.scan("\ud800 bad").hits[0].text == "bad"  # a lone surrogate does not stop the scan
    assert compile_rules([], engine=engine).scan("bad").hits == ()


def test_results_as_json():
    m = compile_rules([keyword("bad", id=12, category="harassment")])

    result = m.scan("so bad")

    assert result.categories == ("harassment",)
    assert json.loads(json.dumps(result.as_json())) == [
        {
            "rule_id": 12,
            "category": "harassment",
            "severity": "flag",
            "start": 3,
            "end": 6,
            "text": "bad",
        }
    ]


# --- engines agree, threads, bulk --------------------------------------------------------------
def _mixed_corpus(n: int) -> list[str]:
    r = random.Random(12)
    pieces = [
        "今天天气很好，我们去公园散步。",
        "The class assignment is due on Friday.",
        "我想自杀",
        "I want to kill myself",
        "手机13812345678",
        "email me at someone@example.org",
        "身份证号110105199001011234",
        "how to make a pipe bomb",
        "儿童色情",
        "SPAM spam Spam",
        "订单 AB-123456",
        "café ДОМ",
        "\n",
        " ",
    ]
    return ["".join(r.choice(pieces) for _ in range(r.randint(0, 12))) for _ in range(n)]


@pytest.mark.skipif(not HAVE_HYPERSCAN, reason="hyperscan is not usable here")
def test_both_engines_give_the_same_hits_on_a_mixed_corpus():
    rules = default_rules() + [
        keyword("spam", id="spam"),
        regex(r"[A-Z]{2}-\d{4,6}", id="code"),
        regex(r"[\u4e00-\u9fff]{2}色情", id="zh"),
        keyword("Café", id="cafe", case_sensitive=True),
        regex(r"дом", id="ru"),
    ]
    hs = compile_rules(rules, engine="hyperscan")
    r2 = compile_rules(rules, engine="re2")
    corpus = _mixed_corpus(2000)

    found = [a.as_json() for a in hs.scan_many(corpus)]

    assert found == [b.as_json() for b in r2.scan_many(corpus)]
    assert sum(1 for f in found if f) > 1000


@pytest.mark.parametrize("engine", ENGINES)
def test_scan_may_be_called_from_several_threads(engine):
    m = compile_rules(default_rules(), engine=engine)
    corpus = _mixed_corpus(400)
    expected = [m.scan(t) for t in corpus]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(m.scan, corpus * 4))

    assert results == expected * 4


@pytest.mark.parametrize("engine", ENGINES)
def test_scan_many_gives_what_scan_gives(engine):
    m = compile_rules(default_rules(), engine=engine)
    corpus = _mixed_corpus(200)

    assert list(m.scan_many(iter(corpus))) == [m.scan(t) for t in corpus]


# --- the default rules -------------------------------------------------------------------------
def test_default_rules_all_validate_and_cover_every_category():
    rules = default_rules()

    for rule in rules:
        validate_rule(rule)
    assert len({r.id for r in rules}) == len(rules)
    assert all(str(r.id).startswith("default:") for r in rules)
    assert {r.category for r in rules} == set(CATEGORIES) - {"custom"}
    assert {r.severity for r in rules} == set(SEVERITIES)
    assert {r.severity for r in rules if r.category == "pii"} == {"flag"}
    assert any(any("\u4e00" <= c <= "\u9fff" for c in r.pattern) for r in rules)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("text", "category", "severity"),
    [
        ("I want to kill myself tonight", "self-harm/intent", "flag"),
        ("我想自杀，活着没意思", "self-harm/intent", "flag"),
        ("Tell me how to make a pipe bomb", "illicit/violent", "block"),
        ("请告诉我如何制造炸弹", "illicit/violent", "block"),
        ("这里有儿童色情内容", "sexual/minors", "block"),
        ("You're a pathetic loser", "harassment", "flag"),
        ("你就是个废物", "harassment", "flag"),
        ("我的手机是13812345678", "pii", "flag"),
        ("身份证号110105199001011234", "pii", "flag"),
        ("write to jane.doe@example.com", "pii", "flag"),
        ("card 6222 0212 3456 7890", "pii", "flag"),
    ],
)
def test_default_rules_flag_harmful_sentences(engine, text, category, severity):
    result = compile_rules(default_rules(), engine=engine).scan(text)

    assert category in result.categories
    assert result.severity == severity


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "text",
    [
        "class assignment",
        "今天天气很好",
        "The assassin in the novel was never caught.",
        "Please kill the process and restart the server.",
        "会议定于2024年5月20日下午3点举行，地点在三楼会议室。",
        "Order #12345 shipped on 2024-05-20; total $39.90.",
        "我们的团队正在研究新的机器学习模型。",
    ],
)
def test_default_rules_leave_ordinary_sentences_alone(engine, text):
    assert compile_rules(default_rules(), engine=engine).scan(text).hits == ()


# --- purity ------------------------------------------------------------------------------------
def test_the_package_imports_without_django_or_celery():
    probe = (
        "import json, sys, workers.moderation as m; m.compile_rules(m.default_rules())\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('django', 'celery', 'channels', 'apps', 'webapp'))))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120
    )

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
