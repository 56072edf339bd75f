"""Column mappings (guessed and chosen), prompt templates and previews."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.data.import_samples import (
    QA,
    expected_jsonl,
    png,
    qa_records,
    write_csv,
    write_jsonl,
    write_zip,
)
from workers.data import (
    DEFAULT_TEMPLATES,
    DatasetInvalid,
    Mapping,
    TemplateError,
    check_template,
    import_file,
    iter_rows,
    preview,
    render_rows,
    render_template,
    sniff,
    suggest_mapping,
    template_fields,
)

SUGGESTIONS = [
    (["问题", "答案"], Mapping("qa", {"question": "问题", "answer": "答案"})),
    (["问题", "回答"], Mapping("qa", {"question": "问题", "answer": "回答"})),
    (["question", "answer"], Mapping("qa", {"question": "question", "answer": "answer"})),
    (
        ["Question Text", "Answer_Text"],
        Mapping("qa", {"question": "Question Text", "answer": "Answer_Text"}),
    ),
    (
        ["编号", "患者问题", "医生回答"],
        Mapping("qa", {"question": "患者问题", "answer": "医生回答"}),
    ),
    (["query", "response"], Mapping("qa", {"question": "query", "answer": "response"})),
    (["prompt", "completion"], Mapping("qa", {"question": "prompt", "answer": "completion"})),
    (
        ["instruction", "input", "output"],
        Mapping(
            "instruction", {"instruction": "instruction", "input": "input", "output": "output"}
        ),
    ),
    (
        ["Instruction", "Output"],
        Mapping("instruction", {"instruction": "Instruction", "output": "Output"}),
    ),
    (
        ["指令", "输入", "输出"],
        Mapping("instruction", {"instruction": "指令", "input": "输入", "output": "输出"}),
    ),
    (
        ["prompt", "chosen", "rejected"],
        Mapping("preference", {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
    ),
    (
        ["question", "chosen_response", "rejected_response"],
        Mapping(
            "preference",
            {"prompt": "question", "chosen": "chosen_response", "rejected": "rejected_response"},
        ),
    ),
    (["messages"], Mapping("chat", {"messages": "messages"})),
    (["id", "conversations"], Mapping("chat", {"messages": "conversations"})),
    (
        ["left", "right"],
        Mapping("qa", {"question": "left", "answer": "right"}),
    ),  # two columns: in order
    (["id", "text", "label"], None),
    ([], None),
]


@pytest.mark.parametrize(
    ("columns", "expected"), SUGGESTIONS, ids=[",".join(c) or "none" for c, _ in SUGGESTIONS]
)
def test_it_suggests_a_mapping_from_column_names(columns, expected):
    assert suggest_mapping(columns) == expected


def test_sniff_reports_format_encoding_columns_and_sample(tmp_path):
    path = write_csv(
        tmp_path / "medical_qa.csv",
        ["问题", "答案", "科室"],
        [(*r, "内科") for r in QA],
        encoding="gbk",
    )
    sniffed = sniff(path, path.name)
    assert (sniffed.format, sniffed.encoding, sniffed.container) == ("csv", "gb18030", "csv")
    assert sniffed.columns == ["问题", "答案", "科室"]
    assert sniffed.sample_rows[0] == {"问题": QA[0][0], "答案": QA[0][1], "科室": "内科"}
    assert sniffed.suggested_mapping == Mapping("qa", {"question": "问题", "answer": "答案"})
    assert sniffed.sample_errors == []


def test_sniff_lists_problems_in_the_sample_without_raising(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\nnot json\n', encoding="utf-8")
    sniffed = sniff(path, path.name)
    assert sniffed.format == "jsonl"
    assert [e.message for e in sniffed.sample_errors] == [
        "line 2: not valid JSON (Expecting value at char 0)"
    ]


def test_a_chosen_mapping_picks_columns_and_ignores_the_rest(tmp_path):
    rows = [("内科", q, a, "2024-01-01") for q, a in QA]
    path = write_csv(tmp_path / "m.csv", ["科室", "患者描述", "医生建议", "日期"], rows)
    mapping = Mapping("qa", {"question": "患者描述", "answer": "医生建议"})
    result = import_file(path, path.name, out_dir=tmp_path / "out", mapping=mapping)
    assert result.sha256 == hashlib.sha256(expected_jsonl(qa_records())).hexdigest()
    assert result.mapping == mapping
    assert result.warnings == ['unmapped columns were ignored: "科室", "日期"']


def test_a_mapping_can_swap_roles(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["question", "answer"], QA)
    swapped = Mapping("qa", {"question": "answer", "answer": "question"})
    result = import_file(path, path.name, out_dir=tmp_path / "out", mapping=swapped)
    assert next(iter_rows(result.canonical_path)) == {"question": QA[0][1], "answer": QA[0][0]}


def test_an_instruction_mapping_allows_an_empty_or_unmapped_input(tmp_path):
    rows = [("翻译成英文", "你好", "Hello"), ("Say hi", "", "Hi")]
    path = write_csv(tmp_path / "i.csv", ["task", "context", "target"], rows)
    with_input = import_file(
        path,
        path.name,
        out_dir=tmp_path / "a",
        mapping=Mapping(
            "instruction", {"instruction": "task", "input": "context", "output": "target"}
        ),
    )
    assert list(iter_rows(with_input.canonical_path)) == [
        {"instruction": "翻译成英文", "input": "你好", "output": "Hello"},
        {"instruction": "Say hi", "input": "", "output": "Hi"},
    ]
    without = import_file(
        path,
        path.name,
        out_dir=tmp_path / "b",
        mapping=Mapping("instruction", {"instruction": "task", "output": "target"}),
    )
    assert [r["input"] for r in iter_rows(without.canonical_path)] == ["", ""]


def test_a_preference_mapping_from_other_names(tmp_path):
    records = [{"query": "p", "good": "c", "bad": "r", "score": 1}]
    path = write_jsonl(tmp_path / "p.jsonl", records)
    mapping = Mapping("preference", {"prompt": "query", "chosen": "good", "rejected": "bad"})
    result = import_file(path, path.name, out_dir=tmp_path / "out", mapping=mapping)
    assert list(iter_rows(result.canonical_path)) == [
        {"prompt": "p", "chosen": "c", "rejected": "r"}
    ]


def test_a_chat_mapping_reads_messages_held_as_json_in_a_csv_cell(tmp_path):
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好!"}]
    path = write_csv(tmp_path / "c.csv", ["dialog"], [(json.dumps(messages, ensure_ascii=False),)])
    result = import_file(
        path, path.name, out_dir=tmp_path / "out", mapping=Mapping("chat", {"messages": "dialog"})
    )
    assert list(iter_rows(result.canonical_path)) == [{"messages": messages}]


def test_numbers_in_json_are_refused_as_text_and_imports_once_quoted(tmp_path):
    # Issue 15: a number is not silently turned into text (0.10 would come back as 0.1).
    bare = write_jsonl(tmp_path / "n.jsonl", [{"question": "6 × 7?", "answer": 42}])
    with pytest.raises(DatasetInvalid, match=r'column "answer" must be text, not a number \(42\)'):
        import_file(bare, bare.name, out_dir=tmp_path / "bare")
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "6 × 7?", "answer": "42"}])
    other = write_csv(tmp_path / "n.csv", ["question", "answer"], [("6 × 7?", "42")])
    a = import_file(path, path.name, out_dir=tmp_path / "a")
    b = import_file(other, other.name, out_dir=tmp_path / "b")
    assert a.sha256 == b.sha256


def test_a_mapping_round_trips_through_a_dict():
    mapping = Mapping("instruction", {"instruction": "a", "input": "b", "output": "c"})
    assert Mapping.from_dict(json.loads(json.dumps(mapping.to_dict()))) == mapping


# --- templates ------------------------------------------------------------------------------------


def test_the_default_qa_template_is_the_teams_recipe():
    record = {"question": "头痛怎么办?", "answer": "多休息。"}
    assert DEFAULT_TEMPLATES["qa"] == "### 问题:{question}\n### 回答:{answer}"
    assert (
        render_template(DEFAULT_TEMPLATES["qa"], record)
        == "### 问题:头痛怎么办?\n### 回答:多休息。"
    )


@pytest.mark.parametrize("schema", ["qa", "instruction", "chat", "preference", "image_caption"])
def test_every_schema_has_a_default_template_that_fits_it(schema):
    check_template(DEFAULT_TEMPLATES[schema], schema)


def test_double_braces_are_literal_braces():
    out = render_template('{{"q": "{question}"}} {{answer}}', {"question": "x", "answer": "y"})
    assert out == '{"q": "x"} {answer}'


def test_unknown_placeholders_are_named_with_the_available_ones():
    with pytest.raises(TemplateError) as caught:
        render_template("{quesion} {answr} {quesion} {answer}", {"question": "q", "answer": "a"})
    assert (
        str(caught.value)
        == "unknown placeholders {quesion}, {answr} (available: {answer}, {question})"
    )
    with pytest.raises(
        TemplateError,
        match=r"unknown placeholder \{output\} \(available: \{answer\}, \{question\}\)",
    ):
        check_template("{question} {output}", "qa")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("### {question", 'unmatched "{" at character 5 (write {{ for a literal brace)'),
        ("{answer} }", 'unmatched "}" at character 10 (write }} for a literal brace)'),
        (
            "{question!r}",
            "{question!r} is not a placeholder (use a field name such as {question}, and {{ }} for literal braces)",
        ),
        (
            "{question.__class__}",
            "{question.__class__} is not a placeholder (use a field name such as {question}, and {{ }} for literal braces)",
        ),
        (
            "{}",
            "{} is not a placeholder (use a field name such as {question}, and {{ }} for literal braces)",
        ),
    ],
)
def test_malformed_templates_say_what_is_wrong(template, message):
    with pytest.raises(TemplateError) as caught:
        render_template(template, {"question": "q", "answer": "a"})
    assert str(caught.value) == message


def test_template_fields_lists_placeholders_once_in_order():
    assert template_fields("{answer}{{x}}{question}{answer}") == ["answer", "question"]


def test_a_chat_renders_one_line_per_message():
    record = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    assert render_template(DEFAULT_TEMPLATES["chat"], record) == "user: hi\nassistant: hello"


def test_preview_renders_the_first_rows_with_the_default_template(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["问题", "答案"], QA)
    shown = preview(path, path.name, n=2)
    assert [s.location for s in shown.samples] == ["row 1", "row 2"]
    assert shown.samples[0].text == f"### 问题:{QA[0][0]}\n### 回答:{QA[0][1]}"
    assert shown.samples[0].record == {"question": QA[0][0], "answer": QA[0][1]}
    assert shown.template == DEFAULT_TEMPLATES["qa"]
    assert shown.errors == []


def test_preview_uses_an_edited_template_and_mapping(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["a", "b"], QA)
    shown = preview(
        path,
        path.name,
        mapping=Mapping("qa", {"question": "b", "answer": "a"}),
        template="<s>{question}</s>{{{answer}}}",
        n=5,
    )
    assert len(shown.samples) == len(QA)
    assert shown.samples[0].text == f"<s>{QA[0][1]}</s>{{{QA[0][0]}}}"


def test_preview_shows_bad_rows_among_the_first(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["question", "answer"], [QA[0], ("q", ""), QA[1]])
    shown = preview(path, path.name, n=5)
    assert len(shown.samples) == 2
    assert [e.message for e in shown.errors] == ['row 2: column "answer" is empty']


def test_preview_refuses_a_template_that_does_not_fit(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["question", "answer"], QA)
    with pytest.raises(TemplateError, match=r"unknown placeholder \{instruction\}"):
        preview(path, path.name, template="{instruction}")


def test_preview_reports_missing_columns(tmp_path):
    path = write_csv(tmp_path / "qa.csv", ["question", "answer"], QA)
    with pytest.raises(DatasetInvalid, match='missing column "答案"'):
        preview(path, path.name, mapping=Mapping("qa", {"question": "question", "answer": "答案"}))


def test_preview_of_an_image_zip_names_images_by_content(tmp_path):
    data = png()
    path = write_zip(tmp_path / "i.zip", [("cat.png", data), ("cat.txt", "一只猫")])
    shown = preview(path, path.name)
    assert shown.samples[0].record == {
        "image": hashlib.sha256(data).hexdigest() + ".png",
        "caption": "一只猫",
    }
    assert shown.samples[0].text == "一只猫"


def test_render_rows_pages_through_an_imported_version(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa_records())
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    page = render_rows(result.canonical_path, "qa", "Q: {question}", offset=2, limit=5)
    assert [s.location for s in page] == ["row 3", "row 4"]
    assert page[0].text == f"Q: {QA[2][0]}"
