"""How a playground run shows the conversation to an adapter that was trained without the
model's chat template.

Our fine-tunes render each training row with its dataset's prompt template
("### 问题:{question}\\n### 回答:{answer}", or "{messages}" for chat data as "role: content"
lines), never with the base model's chat template (Adapter.template says which; empty means the
chat template, as policy runs train). Given the chat template instead, the adapter sees a prompt
unlike anything it learned from and tends to answer as the base model does: the same prompt in
its training shape is what makes its difference show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.data.canonical import render_template, template_fields

Turn = Mapping[str, str]


def trained_with_chat_template(template: str) -> bool:
    """Whether an adapter with this Adapter.template learned from chat-templated text."""
    return not template.strip()


def _split_system(turns: Sequence[Turn]) -> tuple[str, list[Turn]]:
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system" and t["content"])
    return system, [t for t in turns if t["role"] != "system"]


def _pairs(turns: Sequence[Turn]) -> list[tuple[str, str]]:
    """Earlier (user, assistant) exchanges, in order; an unanswered user turn gets ""."""
    pairs: list[tuple[str, str]] = []
    for turn in turns:
        if turn["role"] == "user":
            pairs.append((turn["content"], ""))
        elif pairs and not pairs[-1][1]:
            pairs[-1] = (pairs[-1][0], turn["content"])
        else:  # an assistant turn without a question before it: keep its text
            pairs.append(("", turn["content"]))
    return pairs


def _cut_at_answer(template: str, fields: list[str], question: str) -> str:
    """The template with `question` in its first field, cut where its last (answer) field
    starts: the model continues with the answer, as it learned to."""
    marker = "\ue000answer\ue000"
    record = {name: "" for name in fields}
    record[fields[0]] = question
    record[fields[-1]] = marker
    rendered = render_template(template, record)
    return rendered[: rendered.index(marker)]


def _fields_prompt(template: str, fields: list[str], turns: Sequence[Turn]) -> str:
    """Earlier exchanges rendered whole, one per line as training rows were, then the last
    question cut at its answer."""
    *done, (last, _) = _pairs(turns) or [("", "")]
    lines = []
    for question, answer in done:
        record = {name: "" for name in fields}
        record[fields[0]], record[fields[-1]] = question, answer
        lines.append(render_template(template, record))
    return "\n".join([*lines, _cut_at_answer(template, fields, last)])


def adapter_prompt(template: str, turns: Sequence[Turn]) -> str | None:
    """The conversation (system/user/assistant turns, the last one the user's) as the text an
    adapter trained on dataset template `template` reads, or None when the template has no
    shape to put it in (one plain field: the caller sends the text as it is)."""
    fields = template_fields(template)
    if fields == ["messages"]:
        # Chat rows trained as "role: content" lines (system ones too): the same lines, then
        # the assistant's cue.
        return render_template(template, {"messages": list(turns)}) + "\nassistant:"
    if len(fields) < 2:
        return None
    system, rest = _split_system(turns)
    text = _fields_prompt(template, fields, rest)
    return f"{system}\n\n{text}" if system else text
