"""The playground's conversations and prompt shapes through the real job runtime (in-process):
each adapter reads the prompt the way it was trained, the whole conversation is answered, and
the page tells which template an adapter learned from."""

from __future__ import annotations

import json

import pytest

from apps.jobs import services as job_services
from apps.models.models import Adapter, BaseModel
from apps.models.services import ensure_builtin_rows, model_folder
from apps.outputs.models import Output
from apps.playground.prompts import adapter_prompt, trained_with_chat_template
from workers.data.canonical import render_template

QA = "### 问题:{question}\n### 回答:{answer}"


# ---------------------------------------------------------------- prompt shapes (pure)


def test_an_adapter_reads_its_training_row_cut_where_the_answer_starts():
    row = render_template(QA, {"question": "一年有几个月?", "answer": "十二个月。"})
    prompt = adapter_prompt(QA, [{"role": "user", "content": "一年有几个月?"}])

    assert prompt == "### 问题:一年有几个月?\n### 回答:"
    assert row.startswith(prompt) and row[len(prompt) :] == "十二个月。"


def test_earlier_exchanges_are_rendered_whole_and_the_system_prompt_comes_first():
    turns = [
        {"role": "system", "content": "简短回答。"},
        {"role": "user", "content": "你好吗?"},
        {"role": "assistant", "content": "我很好。"},
        {"role": "user", "content": "今天呢?"},
    ]

    assert adapter_prompt(QA, turns) == (
        "简短回答。\n\n### 问题:你好吗?\n### 回答:我很好。\n### 问题:今天呢?\n### 回答:"
    )


def test_a_chat_dataset_adapter_reads_role_lines_as_it_was_trained():
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    trained = render_template("{messages}", {"messages": turns[:2]})

    prompt = adapter_prompt("{messages}", turns)

    assert prompt == "user: Hi\nassistant: Hello\nuser: Bye\nassistant:"
    assert prompt.startswith(trained)


def test_a_template_without_an_answer_field_gives_no_shape():
    assert adapter_prompt("{caption}", [{"role": "user", "content": "x"}]) is None


def test_only_an_adapter_without_a_dataset_template_counts_as_chat_trained():
    assert trained_with_chat_template("") and trained_with_chat_template("  ")
    assert not trained_with_chat_template(QA)


# ---------------------------------------------------------------- through the runtime


@pytest.fixture
def tiny(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    ensure_builtin_rows()
    return BaseModel.objects.get(reference="tiny-llama")


def _lora(tiny, settings, project, name: str, template: str) -> Adapter:
    """A real PEFT folder for the tiny Llama, with non-zero weights so its answers differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_folder(tiny))
    peft = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
    )
    rel = f"adapters/{project.pk}/{name}/adapter"
    peft.save_pretrained(settings.MEDIA_ROOT / rel)
    return Adapter.objects.create(
        project=project, name=name, base_model=tiny, storage_path=rel, template=template
    )


@pytest.fixture
def qa_lora(tiny, settings, project, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return _lora(tiny, settings, project, "qa", QA)


def run(project, member, **params):
    from workers.tasks.runtime import execute_job

    job = job_services.job_create(project=project, kind="textgen", params=params, created_by=member)
    outcome = execute_job(job.pk, worker_id="test")
    job.refresh_from_db()
    assert outcome == "succeeded", job.error
    return job


def rendered(job) -> list[str]:
    return [o.params["rendered_prompt"] for o in Output.objects.filter(job=job).order_by("pk")]


@pytest.mark.django_db(transaction=True)
def test_with_the_chat_template_off_base_and_lora_read_the_adapters_training_shape(
    project, member, tiny, qa_lora
):
    job = run(
        project,
        member,
        base_model_id=tiny.pk,
        adapter_ids=[None, qa_lora.pk],
        prompt="一年有几个月?",
        use_chat_template=False,
        use_adapter_template=True,
        max_new_tokens=4,
        seed=-1,
    )

    assert rendered(job) == ["### 问题:一年有几个月?\n### 回答:"] * 2
    base, lora = Output.objects.filter(job=job).order_by("pk")
    assert base.adapter is None and lora.adapter == qa_lora
    assert base.seed == lora.seed  # one seed drawn for both columns


@pytest.mark.django_db(transaction=True)
def test_with_the_chat_template_on_both_read_the_chat_template(project, member, tiny, qa_lora):
    job = run(
        project,
        member,
        base_model_id=tiny.pk,
        adapter_ids=[None, qa_lora.pk],
        prompt="Hi",
        use_chat_template=True,
        use_adapter_template=True,
        max_new_tokens=4,
        seed=1,
    )

    assert rendered(job) == ["<|user|>\nHi</s>\n<|assistant|>\n"] * 2


@pytest.mark.django_db(transaction=True)
def test_without_use_adapter_template_the_text_goes_as_it_is(project, member, tiny, qa_lora):
    # The API's completions: the client's text, untouched.
    job = run(
        project,
        member,
        base_model_id=tiny.pk,
        adapter_ids=[qa_lora.pk],
        prompt="Once upon a time",
        use_chat_template=False,
        max_new_tokens=4,
        seed=1,
    )

    assert rendered(job) == ["Once upon a time"]


@pytest.mark.django_db(transaction=True)
def test_each_adapter_reads_its_own_template(project, member, tiny, qa_lora, settings):
    chat_rows = _lora(tiny, settings, project, "chat", "{messages}")

    job = run(
        project,
        member,
        base_model_id=tiny.pk,
        adapter_ids=[qa_lora.pk, chat_rows.pk],
        prompt="Hi",
        use_chat_template=False,
        use_adapter_template=True,
        max_new_tokens=4,
        seed=1,
    )

    assert rendered(job) == ["### 问题:Hi\n### 回答:", "user: Hi\nassistant:"]


@pytest.mark.django_db(transaction=True)
def test_a_conversation_is_answered_whole_in_either_shape(project, member, tiny, qa_lora):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    common = {
        "base_model_id": tiny.pk,
        "adapter_ids": [None, qa_lora.pk],
        "prompt": "Bye",
        "system": "Be brief.",
        "messages": messages,
        "use_adapter_template": True,
        "max_new_tokens": 4,
        "seed": 2,
    }

    chat = run(project, member, **common, use_chat_template=True)
    shaped = run(project, member, **common, use_chat_template=False)

    assert (
        rendered(chat)
        == [
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
            "<|user|>\nBye</s>\n<|assistant|>\n"
        ]
        * 2
    )
    assert (
        rendered(shaped)
        == ["Be brief.\n\n### 问题:Hi\n### 回答:Hello\n### 问题:Bye\n### 回答:"] * 2
    )
    # The output keeps the user's last turn as its prompt, and the whole conversation.
    output = Output.objects.filter(job=shaped).first()
    assert output.prompt == "Bye" and output.params["messages"] == messages


# ---------------------------------------------------------------- the page


@pytest.mark.django_db
def test_the_page_says_which_template_each_adapter_learned_from(client, project, member, tiny):
    Adapter.objects.create(
        project=project, name="qa", base_model=tiny, storage_path="x", template=QA
    )
    Adapter.objects.create(project=project, name="policy", base_model=tiny, storage_path="y")
    client.force_login(member)

    page = client.get(f"/projects/{project.pk}/playground/").content.decode()

    assert 'data-chat="false" data-template="### 问题:{question}\n### 回答:{answer}"' in page
    assert 'data-chat="true" data-template=""' in page
    strings = page.split('id="playground-strings">', 1)[1].split("</script>", 1)[0]
    assert "trained without the chat template" in json.loads(strings)["chatMismatch"]
    presets = page.split('id="playground-presets">', 1)[1].split("</script>", 1)[0]
    assert len(json.loads(presets)) >= 3
