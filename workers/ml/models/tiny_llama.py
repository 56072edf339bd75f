"""The tiny Llama built in code (~150k parameters, random weights, a byte-level BPE tokenizer
trained on a small bilingual corpus): tests and the fast demo path, no download."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workers.common.fs import publish_folder, temp_sibling
from workers.ml.models.markers import read_marker, write_marker

__all__ = ["TINY_CHAT_TEMPLATE", "TINY_SPECIAL_TOKENS", "build_tiny_llama"]

TINY_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "A model learns from examples and makes predictions.",
    "Fine-tuning adapts a pretrained model to a new task with a small dataset.",
    "Low-rank adapters train only a few parameters and keep the base model frozen.",
    "The learning rate controls how large each optimisation step is.",
    "Please answer the question briefly and politely.",
    "What is the capital of France? The capital of France is Paris.",
    "How many days are in a week? There are seven days in a week.",
    "Hello! How can I help you today?",
    "Thank you very much, see you tomorrow.",
    "### 问题: 今天天气怎么样?\n### 回答: 今天天气很好, 阳光明媚。",
    "### 问题: 中国的首都是哪里?\n### 回答: 中国的首都是北京。",
    "### 问题: 一年有几个月?\n### 回答: 一年有十二个月。",
    "### 问题: 你好吗?\n### 回答: 我很好, 谢谢你。",
    "机器学习模型从数据中学习规律。",
    "微调可以让预训练模型适应新的任务。",
    "低秩适配器只训练少量参数。",
    "请简要而礼貌地回答问题。",
    "我们今天学习人工智能和自然语言处理。",
    "数字一二三四五六七八九十。",
    "Question: What colour is the sky? Answer: The sky is blue.",
    "Question: 2 + 2 = ? Answer: 4.",
    "<|user|>\nHi there</s>\n<|assistant|>\nHello, nice to meet you.</s>",
    "<|user|>\n你好</s>\n<|assistant|>\n你好, 很高兴认识你。</s>",
)


def _train_tiny_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(TINY_CORPUS) * 4, trainer=trainer)
    return tok


def build_tiny_llama(path: str | os.PathLike, *, seed: int = 0, vocab_size: int = 512) -> Path:
    """A tiny LlamaForCausalLM (~150k params) with a byte-level BPE tokenizer, saved in HF layout.

    Deterministic for a seed: the same weight bytes every time. Written atomically (temp folder
    then rename). If `path` already holds a complete tiny Llama with the same seed and vocab
    size it is returned as is; any other non-empty `path` raises FileExistsError.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = Path(path).expanduser().resolve()
    wanted = {"kind": "tiny-llama", "seed": seed, "vocab_size": vocab_size}
    if target.is_dir() and any(target.iterdir()):
        marker = read_marker(target) or {}
        if {k: marker.get(k) for k in wanted} == wanted:
            return target
        raise FileExistsError(f"{target} exists and is not this tiny Llama")
    if vocab_size < 256 + len(TINY_SPECIAL_TOKENS):
        raise ValueError("vocab_size must cover the 256 byte tokens and the special tokens")

    tmp = temp_sibling(target)
    try:
        backend = _train_tiny_tokenizer(vocab_size)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
            model_max_length=256,
            padding_side="right",
        )
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
        config = LlamaConfig(
            vocab_size=backend.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config)
        model.config.dtype = "float32"
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n"
            f"# Tiny Llama (seed {seed})\n\nA {sum(p.numel() for p in model.parameters()):,}"
            "-parameter Llama with random weights and a byte-level BPE tokenizer, built in code "
            "by Atelier for tests and the fast demo path. It knows nothing until fine-tuned.\n"
        )
        write_marker(tmp, **wanted)
        publish_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
