"""Text generation for the playground: settings, prompt building, streamed seeded generation on
warm (cached) models, optional LoRA adapters and quantization, and base-vs-adapter comparison.

Pure ML code (no Django, no Celery): the job kind passes callbacks (`on_text` to forward text
deltas to the websocket, `should_stop` for cooperative cancel) and stores the result.

Sampling does not touch torch's global RNG: the last logits processor draws the next token with a
`torch.Generator` on the model's device, seeded from the settings, and greedy decoding then picks
exactly that token. The same seed gives the same text whatever else the process does with random
numbers, and concurrent generations do not disturb each other.
"""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from workers.common.timing import timed
from workers.ml.reporting import JobFailed

__all__ = [
    "QUANTIZATIONS",
    "GenerationResult",
    "GenerationSettings",
    "StopText",
    "build_prompt",
    "compare",
    "generate_text",
    "load_for_generation",
    "resolve_generation_device",
]

QUANTIZATIONS: tuple[str | None, ...] = (None, "int8-weight", "int8-dynamic", "4bit", "8bit")
MAX_NEW_TOKENS = 4096
MAX_SEED = 2**63 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


@dataclass(frozen=True)
class GenerationSettings:
    """Playground settings, validated on construction (ValueError names the field)."""

    max_new_tokens: int = 200
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 0.9  # 1.0 switches nucleus filtering off
    top_k: int = 50  # 0 switches top-k filtering off
    repetition_penalty: float = 1.1  # 1.0 switches it off
    seed: int = -1  # -1: a random seed is drawn and reported in the result
    quantization: str | None = None  # None | "int8-weight" | "int8-dynamic" | "4bit" | "8bit"

    def __post_init__(self) -> None:
        if self.quantization in ("", "none"):
            object.__setattr__(self, "quantization", None)
        errors = []
        if not _is_int(self.max_new_tokens) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            errors.append(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 5:
            errors.append("temperature must be a number from 0 (greedy) to 5")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            errors.append("top_p must be a number above 0 and at most 1")
        if not _is_int(self.top_k) or self.top_k < 0:
            errors.append("top_k must be a whole number, 0 or more (0 switches it off)")
        if not _is_number(self.repetition_penalty) or not 0 < self.repetition_penalty <= 10:
            errors.append("repetition_penalty must be a number above 0 and at most 10")
        if not _is_int(self.seed) or not -1 <= self.seed <= MAX_SEED:
            errors.append("seed must be -1 (random) or a whole number from 0 to 2**63-1")
        if self.quantization not in QUANTIZATIONS:
            errors.append("quantization must be none, int8-weight, int8-dynamic, 4bit or 8bit")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def do_sample(self) -> bool:
        """Sampling when the temperature is above 0; greedy decoding at 0."""
        return self.temperature > 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationSettings:
        """Build from job parameters; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generation settings: {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationResult:
    text: str
    tokens: int  # new tokens generated (an end-of-sequence token counts)
    seconds: float  # generation wall time, prompt processing included
    tokens_per_s: float
    seed: int  # the seed actually used (drawn when the settings said -1)
    load_seconds: float  # time spent getting the model: ~0 when it was warm in the cache
    loaded: bool  # True when this call loaded the model, False when the cache had it
    quantization: str | None
    device: str
    adapter_dir: str | None = None
    prompt: str = ""  # the prompt as given to the tokenizer (templates applied)
    prompt_tokens: int = 0
    first_token_seconds: float | None = None
    finish_reason: str = "length"  # length | eos | stop (a stop sequence) | stopped
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.finish_reason == "stopped"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- prompts


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render_dataset_template(template: str, user_text: str) -> str | None:
    """The template with `user_text` as its first field, cut where its last (answer) field starts;
    other fields empty. None when the template has fewer than two fields (nothing to cut at)."""
    from workers.data.canonical import render_template, template_fields

    names = template_fields(template)
    if len(names) < 2:
        return None
    marker = f"\x00answer-{secrets.token_hex(8)}\x00"
    record = {name: "" for name in names}
    record[names[0]] = user_text
    record[names[-1]] = marker
    rendered = render_template(template, record)
    return rendered[: rendered.index(marker)]


ROLE_LABELS = {"system": "", "user": "User: ", "assistant": "Assistant: "}


def _render_messages(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], *, use_chat_template: bool
) -> tuple[str, bool]:
    """A conversation ({role, content} turns) as the prompt for the next assistant turn: the
    model's chat template when it has one; otherwise a plain transcript ("User: ..." /
    "Assistant: ...", system text first) that ends with "Assistant:"."""
    turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    if use_chat_template and _has_chat_template(tokenizer):
        try:
            text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        except Exception:
            system = "\n\n".join(t["content"] for t in turns if t["role"] == "system")
            rest = [t for t in turns if t["role"] != "system"]
            if not system or not rest:
                raise
            # Some chat templates refuse a system role: fold it into the first turn.
            rest[0] = {**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}
            text = tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)
        return str(text), True
    lines = [f"{ROLE_LABELS.get(t['role'], '')}{t['content']}" for t in turns]
    return "\n\n".join([*lines, "Assistant:"]), False


def _render_prompt(
    tokenizer: Any,
    user_text: str,
    *,
    template: str | None = None,
    system: str | None = None,
    use_chat_template: bool = True,
    messages: Sequence[Mapping[str, str]] | None = None,
) -> tuple[str, bool]:
    """(prompt text, whether a chat template produced it). `messages`, when given, is the whole
    conversation and replaces `user_text`, `system` and `template`."""
    if messages:
        return _render_messages(tokenizer, messages, use_chat_template=use_chat_template)
    if use_chat_template and _has_chat_template(tokenizer):
        messages = [{"role": "user", "content": user_text}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        try:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception:
            if not system:
                raise
            # Some chat templates refuse a system role: fold it into the user's turn.
            folded = [{"role": "user", "content": f"{system}\n\n{user_text}"}]
            text = tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
        return str(text), True
    text = None
    if template:
        text = _render_dataset_template(template, user_text)
    if text is None:
        text = user_text
    if system:
        text = f"{system}\n\n{text}"
    return text, False


def build_prompt(
    tokenizer: Any,
    user_text: str,
    *,
    template: str | None = None,
    system: str | None = None,
    use_chat_template: bool = True,
    messages: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """The prompt text for `user_text`.

    - The tokenizer has a chat template (and `use_chat_template`): the template applied to
      [system?, user] with the generation prompt added.
    - Else a dataset template such as "### 问题:{question}\\n### 回答:{answer}": rendered with the
      user text as its first field (middle fields empty) and cut at its last field, so the model
      continues the answer.
    - Else the raw text. A system text, when given, is put before it.

    `use_chat_template=False` is for adapters trained on the dataset template of a chat model.
    `messages` (a multi-turn conversation of {role, content}, roles system/user/assistant)
    replaces the rest: the chat template over all turns, or a plain transcript without one.
    """
    return _render_prompt(
        tokenizer,
        user_text,
        template=template,
        system=system,
        use_chat_template=use_chat_template,
        messages=messages,
    )[0]


# --------------------------------------------------------------------------- devices and loading


def resolve_generation_device(device: str = "auto", quantization: str | None = None) -> str:
    """The concrete device ("cpu", "cuda:N") a run with this quantization will use, or JobFailed
    with a message the user can act on."""
    import torch

    if quantization not in QUANTIZATIONS:
        raise ValueError("quantization must be none, int8-weight, int8-dynamic, 4bit or 8bit")
    cuda = torch.cuda.is_available()
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise ValueError(f'unknown device "{device}" (expected auto, cpu or cuda[:N])')
    if quantization in ("4bit", "8bit"):
        if device == "cpu" or not cuda:
            raise JobFailed(
                f"{quantization} loading needs a CUDA GPU (bitsandbytes) and this worker has none. "
                "On the CPU choose int8-weight or int8-dynamic, or no quantization."
            )
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise JobFailed(
                f"{quantization} loading needs the bitsandbytes package, which is not installed "
                "on this worker. Choose int8-weight or int8-dynamic, or no quantization."
            )
    if quantization in ("int8-dynamic", "int8-weight"):
        if str(device).startswith("cuda"):
            raise JobFailed(
                f"{quantization} quantization runs on the CPU only; on a GPU choose 4bit or 8bit."
            )
        return "cpu"
    if device == "cpu" or (device == "auto" and not cuda):
        return "cpu"
    if not cuda:
        raise JobFailed("CUDA was requested but this worker has no usable GPU")
    if device in ("auto", "cuda"):
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _check_adapter(adapter_dir: str) -> None:
    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise JobFailed(f"{path.name}: not a PEFT adapter folder (no adapter_config.json)")
    if not (path / "adapter_model.safetensors").is_file():
        raise JobFailed(
            f"{path.name}: adapter weights must be adapter_model.safetensors "
            "(pickle formats such as .bin are refused)"
        )


def _load_model(
    model_dir: str, adapter_dir: str | None, quantization: str | None, device: str
) -> tuple[Any, Any]:
    from workers.ml.models import load_causal_lm, quantize_int8_dynamic
    from workers.ml.models.loading import quantize_int8_weight

    if adapter_dir is None:
        model, tokenizer = load_causal_lm(model_dir, device=device, quantization=quantization)
    else:
        # PeftModel.from_pretrained injects LoRA layers into the model it is given: always a
        # fresh base here, never the cached base entry.
        from peft import PeftModel

        if quantization in ("int8-dynamic", "int8-weight"):
            # int8 Linear layers take no LoRA: merge the adapter, then quantize.
            model, tokenizer = load_causal_lm(model_dir, device=device, quantization=None)
            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
            model = (
                quantize_int8_dynamic(model)
                if quantization == "int8-dynamic"
                else quantize_int8_weight(model)
            )
        else:
            model, tokenizer = load_causal_lm(model_dir, device=device, quantization=quantization)
            model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model, tokenizer


def _expected_bytes(model_dir: str, quantization: str | None) -> int | None:
    """The weight files' size, so the cache can make room before an unquantized load."""
    if quantization is not None:
        return None
    try:
        return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors")) or None
    except OSError:
        return None


@timed("textgen.load")
def load_for_generation(
    model_dir: str | os.PathLike[str],
    *,
    adapter_dir: str | os.PathLike[str] | None = None,
    quantization: str | None = None,
    device: str = "auto",
    cache: Any = None,
) -> tuple[Any, Any, bool, float, str]:
    """(model, tokenizer, loaded, load_seconds, device) through the model cache, keyed by
    (model_dir, adapter_dir, quantization, device): a warm key is not loaded again."""
    from workers.ml.cache import ModelKey, default_cache
    from workers.ml.models import ModelRefused, QuantizationUnavailable

    model_path = str(Path(model_dir).resolve())
    adapter_path = str(Path(adapter_dir).resolve()) if adapter_dir else None
    resolved = resolve_generation_device(device, quantization)
    if adapter_path is not None:
        _check_adapter(adapter_path)
    if cache is None:
        cache = default_cache()
    key = ModelKey(model_path, adapter_path, quantization, resolved)
    started = time.perf_counter()
    try:
        (model, tokenizer), loaded = cache.get_or_load(
            key,
            lambda: _load_model(model_path, adapter_path, quantization, resolved),
            expected_bytes=_expected_bytes(model_path, quantization),
        )
    except (ModelRefused, QuantizationUnavailable) as exc:
        raise JobFailed(str(exc)) from exc
    return model, tokenizer, loaded, time.perf_counter() - started, resolved


# --------------------------------------------------------------------------- generation


class StopText:
    """Cuts streamed text at the first of some stop sequences (OpenAI's `stop`), which are left
    out. Text that could still be the start of a stop sequence is held back until the next
    piece decides, so nothing past a stop is ever handed on, even when it spans pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self.pending = ""
        self.hit = False

    def feed(self, delta: str) -> str:
        """The part of `delta` (with what was held back) that is safe to hand on now."""
        if self.hit:
            return ""
        if not self.stops:
            return delta
        text = self.pending + delta
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit, self.pending = True, ""
            return text[: min(found)]
        keep = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:k]):
                    keep = k
                    break
        self.pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, once the text has ended without completing a stop sequence."""
        out, self.pending = self.pending, ""
        return "" if self.hit else out


def _random_seed() -> int:
    return secrets.randbelow(2**31)


def _processors(settings: GenerationSettings, seed: int, device: str) -> Any:
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    class SeededSampler(LogitsProcessor):
        """Draws the next token with a private generator; greedy decoding then takes it."""

        def __init__(self, generator: torch.Generator) -> None:
            self.generator = generator

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
            probs = torch.softmax(scores.float(), dim=-1)
            chosen = torch.multinomial(probs, num_samples=1, generator=self.generator)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, chosen, 0.0)

    processors = LogitsProcessorList()
    if not settings.do_sample:
        return processors
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(settings.temperature)))
    if settings.top_k:
        processors.append(TopKLogitsWarper(top_k=settings.top_k, min_tokens_to_keep=1))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=float(settings.top_p), min_tokens_to_keep=1))
    generator = torch.Generator(device=device).manual_seed(seed)
    processors.append(SeededSampler(generator))
    return processors


def _stop_criterion(should_stop: Callable[[], bool] | None) -> Any:
    import torch
    from transformers import StoppingCriteria

    class StopWhenAsked(StoppingCriteria):
        def __init__(self) -> None:
            self.abort = threading.Event()  # the caller left (its callback raised)
            self.triggered = False  # should_stop() said yes

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any):
            stop = self.abort.is_set()
            if not stop and should_stop is not None and should_stop():
                self.triggered = stop = True
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    return StopWhenAsked()


def _generation_config(model: Any, tokenizer: Any, settings: GenerationSettings, max_new: int):
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    pad = config.pad_token_id
    if pad is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        if isinstance(pad, list):
            pad = pad[0]
    # Sampling is done by our own last logits processor (see the module docstring): generate()
    # itself decodes greedily, and the model's own sampling defaults are cleared.
    config.update(
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        min_p=None,
        typical_p=None,
        max_new_tokens=max_new,
        max_length=None,
        min_new_tokens=None,
        min_length=None,
        repetition_penalty=float(settings.repetition_penalty),
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return config


def _run(
    model: Any,
    tokenizer: Any,
    prompt_text: str,
    chat: bool,
    settings: GenerationSettings,
    seed: int,
    device: str,
    on_text: Callable[[str], None] | None,
    should_stop: Callable[[], bool] | None,
    stops: Sequence[str] = (),
) -> dict[str, Any]:
    from transformers import TextIteratorStreamer

    input_ids, attention_mask = _encode_prompt(tokenizer, prompt_text, chat)
    prompt_tokens = int(input_ids.shape[1])
    max_new = _max_new_tokens(model, prompt_tokens, settings.max_new_tokens)
    inputs = {"input_ids": input_ids.to(device)}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask.to(device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop = _stop_criterion(should_stop)
    generate_kwargs = {
        **inputs,
        "generation_config": _generation_config(model, tokenizer, settings, max_new),
        "logits_processor": _processors(settings, seed, device),
        "streamer": streamer,
    }
    cut = StopText(stops)
    sequences, seconds, first_token, streamed = _stream(
        model, generate_kwargs, stop, streamer, on_text, cut
    )

    new_ids = sequences[0, prompt_tokens:].tolist()
    tokens = len(new_ids)
    if stop.triggered:
        finish = "stopped"
    elif cut.hit:
        finish = "stop"
    elif tokens >= max_new:
        finish = "length"
    else:
        finish = "eos"
    return {
        # Cut at a stop sequence: exactly the text handed on (the tokens past it are dropped).
        "text": streamed
        if cut.hit
        else storable(tokenizer.decode(new_ids, skip_special_tokens=True)),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "prompt_tokens": prompt_tokens,
        "first_token_seconds": first_token,
        "finish_reason": finish,
    }


def storable(text: str) -> str:
    """`text` with NUL characters replaced by U+FFFD: a byte-level model can emit byte 0, which
    PostgreSQL's text and JSON columns refuse (the streamed events and the output row alike)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _encode_prompt(tokenizer: Any, prompt_text: str, chat: bool) -> tuple[Any, Any]:
    """The prompt's (input_ids, attention_mask); an empty prompt starts from BOS alone."""
    import torch

    encoded = tokenizer(prompt_text, return_tensors="pt", add_special_tokens=not chat)
    input_ids = encoded["input_ids"]
    attention_mask = encoded.get("attention_mask")
    if input_ids.shape[1] == 0:
        if tokenizer.bos_token_id is None:
            raise JobFailed("The prompt is empty: write some text to continue.")
        input_ids = torch.tensor([[tokenizer.bos_token_id]])
        attention_mask = None
    return input_ids, attention_mask


def _max_new_tokens(model: Any, prompt_tokens: int, wanted: int) -> int:
    """``wanted``, cut to what the model's context leaves after the prompt (JobFailed when the
    prompt alone fills it)."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        if prompt_tokens >= context:
            raise JobFailed(
                f"The prompt is {prompt_tokens} tokens long; this model reads at most {context}."
            )
        return min(wanted, context - prompt_tokens)
    return wanted


def _stream(
    model: Any,
    generate_kwargs: dict[str, Any],
    stop: Any,
    streamer: Any,
    on_text: Callable[[str], None] | None,
    cut: StopText | None = None,
) -> tuple[Any, float, float | None, str]:
    """Run ``model.generate`` in a thread and hand each decoded piece to ``on_text`` as it comes:
    (the sequences, seconds, seconds to the first piece, the text handed on). With `cut`, text
    ends before the first stop sequence and generation stops at the next token. An exception in
    either thread ends both and is raised here."""
    import torch
    from transformers import StoppingCriteriaList

    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with torch.inference_mode():
                outcome["sequences"] = model.generate(
                    **generate_kwargs, stopping_criteria=StoppingCriteriaList([stop])
                )
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
            streamer.end()  # unblocks the iteration

    with timed("textgen.stream") as span:
        started = time.perf_counter()
        first_token = None
        # Only for a timing subscriber (the benches): wall stamps and the time spent in on_text.
        probing = span.enabled
        callback_s, deltas, last_text = 0.0, 0, None
        pieces: list[str] = []
        thread = threading.Thread(target=work, name="textgen", daemon=True)
        thread.start()
        try:
            for delta in _cut_pieces(streamer, cut, stop):
                if not delta:
                    continue
                delta = storable(delta)
                pieces.append(delta)
                if first_token is None:
                    first_token = time.perf_counter() - started
                    if probing:
                        span.note(first_text=time.time())
                if on_text is not None:
                    if probing:
                        last_text = time.time()
                        c0 = time.perf_counter()
                        on_text(delta)
                        callback_s += time.perf_counter() - c0
                        deltas += 1
                    else:
                        on_text(delta)
        finally:
            stop.abort.set()  # when on_text raised: stop generating at the next token
            thread.join()
        seconds = time.perf_counter() - started
        if probing:
            span.note(callback_s=callback_s, deltas=deltas, last_text=last_text)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["sequences"], seconds, first_token, "".join(pieces)


def _cut_pieces(streamer: Any, cut: StopText | None, stop: Any):
    """The streamer's pieces, cut at a stop sequence (see StopText); past one, generation is
    asked to stop and the rest is drained unseen."""
    if cut is None or not cut.stops:
        yield from streamer
        return
    for delta in streamer:
        if not delta:
            continue
        yield cut.feed(delta)
        if cut.hit:
            stop.abort.set()
    yield cut.flush()


def generate_text(
    model_dir: str | os.PathLike[str],
    prompt: str,
    settings: GenerationSettings | None = None,
    *,
    adapter_dir: str | os.PathLike[str] | None = None,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: Any = None,
    template: str | None = None,
    system: str | None = None,
    use_chat_template: bool = True,
    device: str = "auto",
    messages: Sequence[Mapping[str, str]] | None = None,
    stop: Sequence[str] = (),
) -> GenerationResult:
    """Generate a continuation of `prompt` with the model in `model_dir` (and a LoRA adapter).

    The model comes from `cache` (default: the workers' shared cache), keyed by (model_dir,
    adapter_dir, quantization, device). Text deltas go to `on_text` as they are decoded;
    `should_stop()` is asked after every token. The same seed and settings give the same text.
    `messages`: a multi-turn conversation to answer instead of `prompt` (see build_prompt);
    `stop`: stop sequences, left out of the text (finish_reason "stop").
    """
    settings = settings or GenerationSettings()
    seed = settings.seed if settings.seed >= 0 else _random_seed()
    model, tokenizer, loaded, load_seconds, resolved = load_for_generation(
        model_dir,
        adapter_dir=adapter_dir,
        quantization=settings.quantization,
        device=device,
        cache=cache,
    )
    prompt_text, chat = _render_prompt(
        tokenizer,
        prompt,
        template=template,
        system=system,
        use_chat_template=use_chat_template,
        messages=messages,
    )
    run = _run(
        model, tokenizer, prompt_text, chat, settings, seed, resolved, on_text, should_stop, stop
    )
    return GenerationResult(
        seed=seed,
        load_seconds=load_seconds,
        loaded=loaded,
        quantization=settings.quantization,
        device=resolved,
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        prompt=prompt_text,
        settings=replace(settings, seed=seed).to_dict(),
        **run,
    )


def compare(
    model_dir: str | os.PathLike[str],
    prompt: str,
    settings: GenerationSettings | None = None,
    *,
    adapter_dirs: list[str | os.PathLike[str] | None],
    on_text: Callable[[int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: Any = None,
    template: str | None = None,
    system: str | None = None,
    use_chat_template: bool = True,
    device: str = "auto",
    messages: Sequence[Mapping[str, str]] | None = None,
    stop: Sequence[str] = (),
) -> list[GenerationResult]:
    """The same prompt, settings and seed on the base model (None) and on each adapter, one after
    the other; `on_text(index, delta)` tells which run (index into `adapter_dirs`) a delta is
    for. A stop request ends the current run and skips the rest (fewer results)."""
    if not adapter_dirs:
        raise ValueError("adapter_dirs must name at least one run (None is the base model)")
    settings = settings or GenerationSettings()
    if settings.seed < 0:
        settings = replace(settings, seed=_random_seed())
    results: list[GenerationResult] = []
    for index, adapter_dir in enumerate(adapter_dirs):
        if should_stop is not None and should_stop():
            break
        forward = None
        if on_text is not None:

            def forward(delta: str, _index: int = index) -> None:
                on_text(_index, delta)

        results.append(
            generate_text(
                model_dir,
                prompt,
                settings,
                adapter_dir=adapter_dir,
                on_text=forward,
                should_stop=should_stop,
                cache=cache,
                template=template,
                system=system,
                use_chat_template=use_chat_template,
                device=device,
                messages=messages,
                stop=stop,
            )
        )
        if results[-1].stopped:
            break
    return results
