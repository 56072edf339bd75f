"""Job kind: text generation for the playground (gpu queue), streamed over the job's websocket."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from apps.jobs.prepared import Prepared
from apps.jobs.registry import JobKind, register, runner_at

MAX_TURNS = 200


class ChatTurn(BaseModel):
    model_config = {"extra": "forbid"}

    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=20000)


class Conversation(RootModel[list[ChatTurn]]):
    """A multi-turn conversation. As text (str()), its turns one after the other: what the
    prompt checks at submit read (the kind's prompt_fields), like a prompt."""

    root: list[ChatTurn] = Field(default_factory=list, max_length=MAX_TURNS)

    def __str__(self) -> str:
        return "\n\n".join(turn.content for turn in self.root)


class TextgenParams(BaseModel):
    model_config = {"extra": "forbid"}

    base_model_id: int = Field(..., ge=1, title="Base model")
    # Runs side by side on the same prompt and seed: None is the base model, ids are adapters.
    adapter_ids: list[int | None] = Field(
        default_factory=lambda: [None], min_length=1, max_length=3
    )
    prompt: str = Field(..., min_length=1, max_length=20000, title="Prompt")
    system: str = Field("", max_length=4000, title="System prompt")
    template: str = Field(
        "",
        max_length=4000,
        title="Template",
        description="Used when the model has no chat template",
    )
    use_chat_template: bool = Field(True, title="Use the model's chat template")
    # The playground's choice: with the chat template off, each adapter reads the prompt in the
    # shape it was trained on (its Adapter.template), and the base model the first adapter's, so
    # the columns compare the same text. The API's completions send their text as it is.
    use_adapter_template: bool = Field(
        False,
        title="Use each adapter's training template",
        description="When the chat template is off",
    )
    max_new_tokens: int = Field(200, ge=1, le=4096, title="Max new tokens")
    temperature: float = Field(0.7, ge=0, le=5, title="Temperature")
    top_p: float = Field(0.9, gt=0, le=1, title="Top-p")
    top_k: int = Field(50, ge=0, le=1000, title="Top-k")
    repetition_penalty: float = Field(1.1, ge=0.5, le=3, title="Repetition penalty")
    seed: int = Field(-1, ge=-1, title="Seed", description="-1: random (recorded)")
    quantization: Literal["none", "int8-weight", "int8-dynamic", "8bit", "4bit"] = Field(
        "none",
        title="Quantization",
        description="int8-weight: int8 weights, close to the original (CPU); int8-dynamic: int8 "
        "activations too, faster and less accurate (CPU); 8bit/4bit: bitsandbytes (CUDA)",
    )
    # The OpenAI-compatible chat endpoint's whole conversation (system/user/assistant turns):
    # when given, the model answers it (its chat template over every turn) instead of
    # `prompt` + `system`; `prompt` then holds the last user turn, for the output's record.
    messages: Conversation = Field(default_factory=Conversation, title="Conversation")
    stop: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=4,
        title="Stop sequences",
        description="Generation ends before the first of these (left out of the text)",
    )


def _text_model(key, *, model_id, project_id):
    from apps.models.models import BaseModel as Base

    return (
        Base.objects.filter(pk=model_id, kind="text", enabled=True)
        .usable_by(project_id)
        .values_list("pk", "name")[:1]
    )


# Every chat request checks its model (prepared: the chat API's time to first token).
_TEXT_MODEL = Prepared(_text_model, model_id="int", project_id="int")


def check(project, params: TextgenParams, *, user=None) -> dict[str, str]:
    from apps.models.models import Adapter

    errors: dict[str, str] = {}
    rows = _TEXT_MODEL.execute(model_id=params.base_model_id, project_id=project.pk)
    if not rows:
        return {"base_model_id": "No such text model"}
    base_id, base_name = rows[0]
    ids = [i for i in params.adapter_ids if i is not None]
    if not ids:  # the base model alone (most chat calls): nothing more to look up
        return errors
    found = set(
        Adapter.objects.filter(pk__in=ids, project=project, base_model_id=base_id).values_list(
            "pk", flat=True
        )
    )
    missing = [i for i in ids if i not in found]
    if missing:
        errors["adapter_ids"] = f"No adapter {missing[0]} for {base_name} in this project"
        return errors
    scorer = (
        Adapter.objects.filter(pk__in=ids, kind="reward").values_list("name", flat=True).first()
    )
    if scorer is not None:  # a score head, not a language-model head: it cannot write text
        errors["adapter_ids"] = (
            f"{scorer} is a reward model: it scores texts (gallery: Score outputs) and cannot "
            "generate them"
        )
    return errors


register(
    JobKind(
        name="textgen",
        label="Text generation",
        queue="gpu",
        params=TextgenParams,
        runner=runner_at("apps.playground.runners:run_textgen"),
        check=check,
        prompt_fields=("prompt", "system", "template", "messages"),
        launchable=False,
        description="Generates text with a base model and its adapters, streamed live.",
    )
)
