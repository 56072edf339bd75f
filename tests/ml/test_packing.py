"""Sequence packing: a step's examples in one row, no attention across them, the same training."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ml.finetune import (
    ConfigError,
    LoraFinetuneConfig,
    encode_rows,
    train_lora,
)
from workers.ml.finetune.data import IGNORE_INDEX, PackCollator, split_eval
from workers.ml.reporting import RecordingReporter

TEMPLATE = "### 问题:{question}\n### 回答:{answer}"
ROWS = [
    {"question": f"{a} 加 {b} 等于几?", "answer": f"{a} 加 {b} 等于 {a + b}。"}
    for a in range(6)
    for b in range(6)
]
# 36 rows: 29 train, 7 eval; 8 examples a step -> 4 steps an epoch, 24 steps = 6 epochs.
CONFIG = LoraFinetuneConfig(
    max_steps=24,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    warmup_steps=2,
    logging_steps=2,
    save_steps=5,
    eval_steps=0,
    learning_rate=1e-2,
    eval_fraction=0.2,
    max_seq_length=64,
)
PACKED = LoraFinetuneConfig(**{**CONFIG.to_dict(), "packing": True})


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add contention
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def examples(base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    train_rows, _ = split_eval([dict(r) for r in ROWS], CONFIG.eval_fraction, CONFIG.seed)
    return tok, encode_rows(train_rows, tok, TEMPLATE, max_seq_length=64).examples


def _train(base, out, config, reporter=None, **kw):
    return train_lora(
        config,
        base_model_dir=base,
        train_rows=ROWS,
        template=TEMPLATE,
        output_dir=out,
        reporter=reporter or RecordingReporter(),
        **kw,
    )


def _weights(result) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(result.adapter_dir) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory):
    """Unpacked and packed runs of the same recipe, with the default LoRA dropout."""
    return {
        name: _train(base, tmp_path_factory.mktemp(name), config)
        for name, config in (("unpacked", CONFIG), ("packed", PACKED))
    }


def _segments(positions: list[int]) -> list[int]:
    seg, out = -1, []
    for p in positions:
        seg += p == 0
        out.append(seg)
    return out


# --------------------------------------------------------------------- the attention inputs


def test_a_packed_training_step_hands_attention_each_example_apart(base, tmp_path, monkeypatch):
    """Hooks every attention layer inside a real packed training run: each gets one row with the
    step's 8 examples, no padding mask, and position ids that restart at every example, on the
    packed attention (which splits the row there: next test)."""
    from workers.ml.finetune import train as train_module

    seen: list[tuple[str, object]] = []
    add_lora = train_module._add_lora

    def hooked(model, config, targets):
        seen.append(("implementation", model.config._attn_implementation))
        model = add_lora(model, config, targets)
        for layer in model.get_base_model().model.layers:
            layer.self_attn.register_forward_pre_hook(
                lambda module, args, kwargs: seen.append(("call", kwargs)), with_kwargs=True
            )
        return model

    monkeypatch.setattr(train_module, "_add_lora", hooked)
    config = LoraFinetuneConfig(**{**PACKED.to_dict(), "max_steps": 2, "eval_fraction": 0.0})
    assert _train(base, tmp_path, config).status == "succeeded"

    assert seen[0] == ("implementation", train_module.PACKED_ATTENTION)
    calls = [kwargs for kind, kwargs in seen[1:]]
    assert len(calls) == 2 * 2  # 2 steps x 2 layers: one forward per optimizer step
    for kwargs in calls:
        assert kwargs["attention_mask"] is None
        positions = kwargs["position_ids"]
        assert positions.shape[0] == 1  # one packed row
        assert max(_segments(positions[0].tolist())) == 7  # 8 examples


def test_the_packed_attention_never_lets_a_token_see_another_example():
    """On the attention itself: the gradient of each example's output reaches no query, key or
    value of another example (nor a later token of its own), and its output is what causal sdpa
    gives that example alone (exactly: the same kernel on the same slice)."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from workers.ml.finetune.train import packed_attention

    attention = AttentionInterface._global_mapping[packed_attention()]

    class Module(torch.nn.Module):
        is_causal = True
        num_key_value_groups = 1

    module = Module()
    lengths = [5, 1, 7, 3]
    positions = torch.tensor([[p for n in lengths for p in range(n)]])
    segments = torch.tensor(_segments(positions[0].tolist()))
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, sum(lengths), 8, requires_grad=True) for _ in range(3))
    out, _ = attention(module, q, k, v, None, position_ids=positions)  # (1, tokens, heads, dim)
    start = 0
    for index, n in enumerate(lengths):
        alone, _ = sdpa_attention_forward(
            module,
            q[:, :, start : start + n],
            k[:, :, start : start + n],
            v[:, :, start : start + n],
            None,
        )
        assert torch.equal(out[:, start : start + n], alone)
        for t in range(start, start + n):
            q.grad = k.grad = v.grad = None
            out[0, t].sum().backward(retain_graph=True)
            reached = (k.grad[0].abs().sum(dim=(0, 2)) + v.grad[0].abs().sum(dim=(0, 2))) > 0
            assert not reached[segments != index].any()  # no other example
            assert not reached[t + 1 :].any()  # no later token
            assert reached[start : t + 1].all()
        start += n
    # The control: one causal attention over the whole row would mix them.
    whole, _ = sdpa_attention_forward(module, q, k, v, None)
    assert not torch.allclose(whole, out)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_the_mask_built_from_packed_position_ids_is_block_diagonal(base, implementation):
    """transformers' own path, kept for models on eager attention (and sliding windows)."""
    import torch
    from transformers import AutoConfig
    from transformers.masking_utils import create_causal_mask

    config = AutoConfig.from_pretrained(base)
    config._attn_implementation = implementation
    lengths = [5, 1, 7, 3]
    positions = torch.tensor([[p for n in lengths for p in range(n)]])
    embeds = torch.zeros(1, positions.shape[1], config.hidden_size)
    mask = create_causal_mask(
        config=config, inputs_embeds=embeds, attention_mask=None, cache=None, position_ids=positions
    )[0, 0]
    open_ = mask if mask.dtype == torch.bool else mask == 0  # eager: 0 or the dtype's minimum
    segments = torch.tensor(_segments(positions[0].tolist()))
    across = segments[:, None] != segments[None, :]
    assert not open_[across].any()
    assert open_.sum().item() == sum(n * (n + 1) // 2 for n in lengths)  # causal inside each


# ---------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("implementation", ["packed", "sdpa"])
def test_each_example_in_a_packed_row_gets_the_logits_it_gets_alone(base, examples, implementation):
    """On the packed attention (what sdpa models train on) and on transformers' block mask.
    Tolerance 1e-5 (float32; sums over keys may run in another order): seen 0 and ~2e-7."""
    import torch
    from transformers import AutoModelForCausalLM

    from workers.ml.finetune.train import packed_attention

    _, encoded = examples
    batch = encoded[:6]
    packed = PackCollator()(batch)
    model = AutoModelForCausalLM.from_pretrained(base)
    if implementation == "packed":
        model.set_attn_implementation(packed_attention())
    model.config.use_cache = False  # as in training: a cache would hide the packing
    model.eval()
    with torch.no_grad():
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[
            0
        ]
        naive = model(input_ids=packed["input_ids"]).logits[0]  # one long text: no boundaries
        start, worst, leak = 0, 0.0, 0.0
        for ex in batch:
            n = len(ex["input_ids"])
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            worst = max(worst, (together[start : start + n] - alone).abs().max().item())
            leak = max(leak, (naive[start : start + n] - alone).abs().max().item())
            start += n
    assert start == packed["input_ids"].shape[1]  # no padding
    assert worst < 1e-5
    assert leak > 1e-2  # without per-example positions the examples would see each other
    # Each example's first label is masked: no token learns to predict the next example.
    firsts = [i for i, p in enumerate(packed["position_ids"][0].tolist()) if p == 0]
    assert all(packed["labels"][0, i].item() == IGNORE_INDEX for i in firsts)


def test_packed_and_unpacked_training_reach_the_same_eval_loss(runs):
    unpacked, packed = runs["unpacked"].metrics, runs["packed"].metrics
    assert runs["packed"].status == "succeeded" and runs["packed"].global_step == 24
    assert packed["eval_loss_after"] < packed["eval_loss_before"] - 0.2  # it learned
    diff = abs(packed["eval_loss_after"] - unpacked["eval_loss_after"])
    assert diff / unpacked["eval_loss_after"] < 0.02
    assert packed["eval_loss_before"] == unpacked["eval_loss_before"]  # eval is never packed


def test_without_dropout_packing_follows_the_unpacked_trajectory(base, tmp_path):
    """With LoRA dropout off nothing random differs: the same steps up to float rounding."""
    exact = {**CONFIG.to_dict(), "lora_dropout": 0.0, "max_steps": 12}
    a = _weights(_train(base, tmp_path / "a", LoraFinetuneConfig(**exact)))
    b = _weights(_train(base, tmp_path / "b", LoraFinetuneConfig(**{**exact, "packing": True})))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_tokens_per_second_counts_real_tokens_only(runs, examples):
    from workers.ml.finetune.data import PadCollator

    tok, encoded = examples
    real = 6 * sum(len(ex["input_ids"]) for ex in encoded)  # 24 steps = 6 epochs
    padded = PadCollator(tok.pad_token_id)(encoded[:8])["input_ids"].numel()
    assert padded > sum(len(ex["input_ids"]) for ex in encoded[:8])  # the rows differ in length
    for result in runs.values():  # tokens/s = train_tokens / train_seconds
        assert result.metrics["train_tokens"] == real


def test_a_packed_run_resumes_to_the_same_adapter(base, runs, tmp_path):
    class StopAt(RecordingReporter):
        def should_stop(self) -> bool:
            return any(step >= 7 for step, _, _ in self.steps)

    stopped = _train(base, tmp_path, PACKED, StopAt())
    assert stopped.status == "cancelled"
    resumed = _train(base, tmp_path, PACKED)
    assert resumed.resumed_from_step == stopped.global_step
    a, b = _weights(resumed), _weights(runs["packed"])
    assert all(a[k].equal(b[k]) for k in b)


# ------------------------------------------------------------------------------- config


def test_packing_is_off_by_default_and_takes_only_true_or_false():
    assert LoraFinetuneConfig().packing is False
    described = {f["name"]: f for f in LoraFinetuneConfig.describe()}
    assert described["packing"]["type"] == "bool" and "memory" in described["packing"]["help"]
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError) as info:
            LoraFinetuneConfig(packing=bad)
        assert info.value.field == "packing"
