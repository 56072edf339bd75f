"""Text playground generation (workers.ml.textgen) on a tiny Llama built here: streaming, seeds,
warm cache, cancel, prompt templates, LoRA adapters and quantization. Plain pytest, no database."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from workers.ml.reporting import JobFailed  # noqa: E402
from workers.ml.textgen import (  # noqa: E402
    GenerationSettings,
    build_prompt,
    compare,
    generate_text,
)

# peft itself still calls the deprecated transformers property.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
QA_TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
CORPUS = [
    "### 问题:天空是什么颜色?\n### 回答:天空是蓝色的。",
    "### 问题:你好吗?\n### 回答:我很好,谢谢。",
    "the quick brown fox jumps over the lazy dog",
    "hello world, a small model writes small words",
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """{"plain": model dir, "chat": same weights with a chat template, "adapter": LoRA dir}."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny-llm")
    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    plain = root / "plain"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)

    chat = root / "chat"
    shutil.copytree(plain, chat)
    chat_tokenizer = _tokenizer()
    chat_tokenizer.chat_template = CHAT_TEMPLATE
    chat_tokenizer.save_pretrained(chat)

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(LlamaForCausalLM.from_pretrained(plain), lora)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter)
    return {"plain": str(plain), "chat": str(chat), "adapter": str(adapter)}


@pytest.fixture
def cache():
    from workers.ml.cache import ModelCache

    return ModelCache(max_bytes=512 * 2**20)


def fast(**overrides) -> GenerationSettings:
    values = {"max_new_tokens": 24, "seed": 7}
    values.update(overrides)
    return GenerationSettings(**values)


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_validation():
    s = GenerationSettings()
    assert (s.max_new_tokens, s.temperature, s.top_p, s.top_k) == (200, 0.7, 0.9, 50)
    assert (s.repetition_penalty, s.seed, s.quantization) == (1.1, -1, None)
    assert s.do_sample and not GenerationSettings(temperature=0).do_sample
    assert GenerationSettings(quantization="").quantization is None
    assert GenerationSettings.from_dict({"top_k": 0, "quantization": "int8-dynamic"}).top_k == 0
    for bad in (
        {"max_new_tokens": 0},
        {"max_new_tokens": True},
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"top_p": 0},
        {"top_k": -1},
        {"repetition_penalty": 0},
        {"seed": -2},
        {"quantization": "3bit"},
    ):
        with pytest.raises(ValueError):
            GenerationSettings(**bad)
    with pytest.raises(ValueError, match="unknown generation settings: beams"):
        GenerationSettings.from_dict({"beams": 4})


# --------------------------------------------------------------------------- prompts


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_dirs, cache):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["chat"])
    assert build_prompt(tokenizer, "hi", template=QA_TEMPLATE) == "<|user|>hi\n<|assistant|>"
    assert (
        build_prompt(tokenizer, "hi", system="be brief")
        == "<|system|>be brief\n<|user|>hi\n<|assistant|>"
    )
    # Opting out (an adapter trained on the dataset template of a chat model).
    assert (
        build_prompt(tokenizer, "hi", template=QA_TEMPLATE, use_chat_template=False)
        == "### 问题:hi\n### 回答:"
    )

    result = generate_text(tiny_dirs["chat"], "hi", fast(max_new_tokens=4), cache=cache)
    assert result.prompt == "<|user|>hi\n<|assistant|>"


def test_dataset_template_is_cut_at_the_answer(tiny_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["plain"])
    assert not tokenizer.chat_template
    assert build_prompt(tokenizer, "天空是什么颜色?", template=QA_TEMPLATE) == (
        "### 问题:天空是什么颜色?\n### 回答:"
    )
    instruction = "### 指令:{instruction}\n### 输入:{input}\n### 回答:{output}"
    assert build_prompt(tokenizer, "写诗", template=instruction) == (
        "### 指令:写诗\n### 输入:\n### 回答:"
    )
    assert build_prompt(tokenizer, "{not a field}", template="Q: {q} {{x}} A: {a}") == (
        "Q: {not a field} {x} A: "
    )
    assert build_prompt(tokenizer, "raw text") == "raw text"
    assert build_prompt(tokenizer, "raw text", template="{messages}") == "raw text"


# --------------------------------------------------------------------------- generation


def test_streamed_deltas_concatenate_to_the_final_text(tiny_dirs, cache):
    deltas: list[str] = []
    result = generate_text(
        tiny_dirs["plain"],
        "hello world",
        fast(max_new_tokens=32, temperature=1.0),
        on_text=deltas.append,
        cache=cache,
    )
    assert len(deltas) > 1 and all(deltas)
    assert "".join(deltas) == result.text != ""
    assert 0 < result.tokens <= 32 and result.prompt_tokens > 0
    assert result.seconds > 0 and result.tokens_per_s == pytest.approx(
        result.tokens / result.seconds
    )
    assert result.first_token_seconds is not None and result.first_token_seconds <= result.seconds
    assert result.device == "cpu" and result.quantization is None
    assert result.settings["seed"] == 7


def test_same_seed_same_text_other_seed_other_text(tiny_dirs, cache):
    def run(seed: int, temperature: float = 1.0) -> str:
        settings = fast(temperature=temperature, seed=seed)
        return generate_text(tiny_dirs["plain"], "the quick", settings, cache=cache).text

    first = run(1)
    assert run(1) == first
    assert run(2) != first

    # -1 draws a seed and reports it: running again with that seed reproduces the text.
    drawn = generate_text(
        tiny_dirs["plain"], "the quick", fast(temperature=1.0, seed=-1), cache=cache
    )
    assert drawn.seed >= 0
    assert run(drawn.seed) == drawn.text

    # Other users of torch's global RNG, even while tokens are being drawn, do not disturb a
    # seeded run (sampling uses its own generator).
    disturbed = generate_text(
        tiny_dirs["plain"],
        "the quick",
        fast(temperature=1.0, seed=1),
        on_text=lambda delta: torch.rand(16),
        cache=cache,
    )
    assert disturbed.text == first

    # Greedy decoding ignores the seed.
    assert run(1, temperature=0) == run(2, temperature=0)


def test_second_call_on_the_same_key_does_not_reload(tiny_dirs, cache):
    first = generate_text(tiny_dirs["plain"], "hi", fast(max_new_tokens=2), cache=cache)
    second = generate_text(tiny_dirs["plain"], "hi", fast(max_new_tokens=2), cache=cache)
    assert first.loaded and not second.loaded  # the loader ran once: the second call is a hit
    # Another quantization is another key.
    third = generate_text(
        tiny_dirs["plain"], "hi", fast(max_new_tokens=2, quantization="int8-dynamic"), cache=cache
    )
    assert third.loaded


def test_should_stop_ends_generation_early(tiny_dirs, cache):
    full = generate_text(
        tiny_dirs["plain"], "hello", fast(max_new_tokens=40, temperature=0), cache=cache
    )
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 3

    stopped = generate_text(
        tiny_dirs["plain"],
        "hello",
        fast(max_new_tokens=40, temperature=0),
        should_stop=should_stop,
        cache=cache,
    )
    assert stopped.finish_reason == "stopped" and stopped.stopped
    assert stopped.tokens == 3 < full.tokens
    assert full.text.startswith(stopped.text)


def test_an_on_text_error_propagates_and_stops_the_generation_thread(tiny_dirs, cache):
    class Boom(Exception):
        pass

    def on_text(delta: str) -> None:
        raise Boom

    before = threading.active_count()
    with pytest.raises(Boom):
        generate_text(
            tiny_dirs["plain"], "hello", fast(max_new_tokens=200), on_text=on_text, cache=cache
        )
    assert threading.active_count() == before


def test_an_adapter_changes_the_output_and_compare_runs_both_with_one_seed(tiny_dirs, cache):
    settings = fast(temperature=0.8, seed=-1)
    base, tuned = compare(
        tiny_dirs["plain"],
        "你好吗?",
        settings,
        adapter_dirs=[None, tiny_dirs["adapter"]],
        template=QA_TEMPLATE,
        cache=cache,
    )
    assert base.seed == tuned.seed >= 0
    assert base.adapter_dir is None and tuned.adapter_dir == tiny_dirs["adapter"]
    assert base.prompt == tuned.prompt == "### 问题:你好吗?\n### 回答:"
    assert base.text != tuned.text
    # The adapter entry did not leak LoRA layers into the cached base model.
    again = generate_text(
        tiny_dirs["plain"],
        "你好吗?",
        fast(temperature=0.8, seed=base.seed),
        template=QA_TEMPLATE,
        cache=cache,
    )
    assert not again.loaded and again.text == base.text

    deltas: list[tuple[int, str]] = []
    compare(
        tiny_dirs["plain"],
        "hi",
        fast(max_new_tokens=6),
        adapter_dirs=[None, tiny_dirs["adapter"]],
        on_text=lambda i, d: deltas.append((i, d)),
        cache=cache,
    )
    assert {i for i, _ in deltas} == {0, 1}


def test_int8_dynamic_runs_on_cpu_and_reports_its_speed(tiny_dirs, cache):
    result = generate_text(
        tiny_dirs["plain"], "hello", fast(quantization="int8-dynamic"), cache=cache
    )
    assert result.quantization == "int8-dynamic" and result.device == "cpu"
    assert result.tokens > 0 and result.tokens_per_s > 0 and result.text
    with_adapter = generate_text(
        tiny_dirs["plain"],
        "hello",
        fast(quantization="int8-dynamic"),
        adapter_dir=tiny_dirs["adapter"],
        cache=cache,
    )
    assert with_adapter.loaded and with_adapter.tokens > 0


def test_int8_weight_only_keeps_the_originals_greedy_text_with_and_without_an_adapter(
    tiny_dirs, cache
):
    # Weight-only int8 (float activations) stays close to the original model: with greedy
    # decoding the same first tokens come out (int8-dynamic drifts much further, see STACK-NOTES
    # and bench/craft.py); it runs on the CPU and takes an adapter by merging it first.
    plain = generate_text(tiny_dirs["plain"], "hello", fast(temperature=0), cache=cache)
    weight = generate_text(
        tiny_dirs["plain"], "hello", fast(temperature=0, quantization="int8-weight"), cache=cache
    )
    assert weight.quantization == "int8-weight" and weight.device == "cpu"
    assert weight.text[:3] == plain.text[:3]
    with_adapter = generate_text(
        tiny_dirs["plain"],
        "hello",
        fast(quantization="int8-weight"),
        adapter_dir=tiny_dirs["adapter"],
        cache=cache,
    )
    assert with_adapter.loaded and with_adapter.tokens > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_4bit_and_8bit_on_cpu_raise_a_clear_error(tiny_dirs, cache, quantization):
    with pytest.raises(JobFailed, match="needs a CUDA GPU"):
        generate_text(tiny_dirs["plain"], "hi", fast(quantization=quantization), cache=cache)


def test_an_adapter_without_safetensors_is_refused(tiny_dirs, cache, tmp_path):
    broken = tmp_path / "pickled-adapter"
    shutil.copytree(tiny_dirs["adapter"], broken)
    (broken / "adapter_model.safetensors").rename(broken / "adapter_model.bin")
    with pytest.raises(JobFailed, match="safetensors"):
        generate_text(tiny_dirs["plain"], "hi", fast(), adapter_dir=str(broken), cache=cache)


def test_the_workers_default_cache_is_used_when_none_is_given(tiny_dirs):
    from workers.ml.cache import ModelKey, default_cache

    key = ModelKey(str(Path(tiny_dirs["chat"]).resolve()), None, None, "cpu")
    cached_before = key in default_cache()  # another test may have left it there
    first = generate_text(tiny_dirs["chat"], "hi", fast(max_new_tokens=2))
    second = generate_text(tiny_dirs["chat"], "hi", fast(max_new_tokens=2))
    assert not second.loaded
    assert key in default_cache()
    assert first.loaded is not cached_before
    default_cache().evict(key)


def test_a_nul_byte_from_a_byte_level_model_is_kept_as_a_replacement_character():
    # PostgreSQL's text and JSON columns refuse U+0000: a generated NUL used to fail the job's
    # event write (seen with the tiny byte-level model on PostgreSQL).
    from workers.ml.textgen import storable

    assert storable("ok\x00\x00end") == "ok\ufffd\ufffdend"
    assert storable("你好") == "你好"
