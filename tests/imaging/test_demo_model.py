"""The built-in demo image model (workers.imaging.demo_model) and the tiny test pipeline.

The slow test trains the digits model once (about 3-5 minutes on 2 CPU cores) and keeps it under
.pytest-models/<recipe version> (the tests' own models folder), so later runs reuse it; then a judge trained on the 450 digits the
generator never saw reads its generations.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from workers.imaging.demo_model import (
    DIGIT_WORDS_EN,
    DIGIT_WORDS_ZH,
    MARKER,
    RECIPE_VERSION,
    build_clip_tokenizer,
    build_tiny_pipeline,
    digit_captions,
    ensure_digits_pipeline,
    judge_accuracy_on_real_digits,
    judge_digits,
    read_marker,
    train_digits_pipeline,
)
from workers.ml.reporting import JobCancelled

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(settings.MODELS_DIR)  # the tests' own folder (tests/conftest.py), not var/models

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


def test_tokenizer_keeps_each_word_and_chinese_character_whole():
    tok = build_clip_tokenizer()
    assert tok.tokenize("a handwritten digit 7") == [
        "a</w>",
        "handwritten</w>",
        "digit</w>",
        "7</w>",
    ]
    assert len(tok.tokenize("数字七")) == 3  # one token per character
    assert len(tok.tokenize("the number seven")) == 3
    # Any text still tokenizes (byte-level), into more pieces, and decodes back.
    ids = tok("数字七 zebra 🦓").input_ids
    assert len(ids) > 2 + 3 + 1
    assert tok.decode(ids, skip_special_tokens=True) == "数字七 zebra 🦓"
    assert tok("x", padding="max_length", max_length=77).input_ids[-1] == tok.pad_token_id


def test_captions_cover_english_and_chinese():
    captions = digit_captions(7)
    assert "a handwritten digit 7" in captions
    assert "the number seven" in captions
    assert "数字七" in captions
    assert DIGIT_WORDS_EN[7] == "seven" and DIGIT_WORDS_ZH[7] == "七"


def test_tiny_pipeline_is_saved_as_safetensors_and_idempotent(tmp_path):
    folder = build_tiny_pipeline(tmp_path / "tiny")
    weights = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))
    assert weights == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert not list(folder.rglob("*.bin"))
    assert read_marker(folder)["complete"] is True
    stamp = (folder / MARKER).stat().st_mtime_ns
    assert build_tiny_pipeline(folder) == folder
    assert (folder / MARKER).stat().st_mtime_ns == stamp  # returned untouched


def test_tiny_pipeline_same_seed_same_weights(tmp_path):
    a = build_tiny_pipeline(tmp_path / "a", seed=3)
    b = build_tiny_pipeline(tmp_path / "b", seed=3)
    name = "unet/diffusion_pytorch_model.safetensors"
    assert (a / name).read_bytes() == (b / name).read_bytes()


def test_an_incomplete_folder_is_rebuilt(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "half-written.json").write_text("{")
    build_tiny_pipeline(folder)
    assert read_marker(folder)["complete"] is True
    assert not (folder / "half-written.json").exists()


def test_judge_reads_real_held_out_digits():
    assert judge_accuracy_on_real_digits() >= 0.95


def test_judge_reads_rendered_digits_of_any_size():
    from sklearn.datasets import load_digits

    from workers.imaging.demo_model import ink_images

    data = load_digits()
    images = ink_images(data.data[:40] / 16.0)
    big = [im.resize((128, 128)) for im in images]
    assert judge_digits(big) == judge_digits(images)
    assert sum(p == t for p, t in zip(judge_digits(images), data.target[:40], strict=True)) >= 37
    assert judge_digits([]) == []


def test_training_can_be_cancelled_and_leaves_nothing(tmp_path):
    seen = []

    def progress(step, total, metrics):
        seen.append((step, total))

    with pytest.raises(JobCancelled):
        train_digits_pipeline(
            tmp_path / "digits", progress=progress, should_stop=lambda: len(seen) >= 2
        )
    assert seen[0][0] == 1 and seen[-1][0] == 2 and seen[0][1] > 300
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_model_draws_the_digit_the_prompt_names(capsys, monkeypatch):
    import workers.imaging.demo_model as demo
    from workers.imaging.pipeline import GenerationRequest, generate_batch, load_pipeline

    started = time.monotonic()
    folder = ensure_digits_pipeline(MODELS)
    trained_for = time.monotonic() - started
    assert folder == MODELS / RECIPE_VERSION
    marker = read_marker(folder)
    assert marker["complete"] and marker["recipe"] == RECIPE_VERSION

    def not_again(*args, **kwargs):
        raise AssertionError("the cached demo model was trained again or waited for")

    # cached: returned from the marker alone, without the lock and without training
    monkeypatch.setattr(demo, "train_digits_pipeline", not_again)
    monkeypatch.setattr(demo, "file_lock", not_again)
    assert ensure_digits_pipeline(MODELS) == folder
    monkeypatch.undo()

    pipe = load_pipeline(folder, device="cpu", dtype="float32")
    common = {"sampler": "DDIM", "steps": 20, "cfg_scale": 5.0, "width": 32, "height": 32}
    phrasings = {
        "a handwritten digit {d}": 3,
        "数字{zh}": 1,
        "the number {en}": 1,
    }
    requests, truth, kinds = [], [], []
    for template, per_digit in phrasings.items():
        for d in range(10):
            prompt = template.format(d=d, zh=DIGIT_WORDS_ZH[d], en=DIGIT_WORDS_EN[d])
            requests.append(
                GenerationRequest(prompt=prompt, seed=1000 + 10 * d, batch_size=per_digit, **common)
            )
            truth += [d] * per_digit
            kinds += [template] * per_digit
    started = time.monotonic()
    results = generate_batch(pipe, requests)
    generated_in = time.monotonic() - started
    images = [g.image for images in results for g in images]
    assert all(im.size == (32, 32) for im in images)
    read = judge_digits(images)

    def accuracy(template: str) -> float:
        pairs = [(r, t) for r, t, k in zip(read, truth, kinds, strict=True) if k == template]
        return sum(r == t for r, t in pairs) / len(pairs)

    scores = {template: accuracy(template) for template in phrasings}
    with capsys.disabled():
        print(
            f"\n[demo model] trained/loaded in {trained_for:.1f}s (training took "
            f"{marker.get('train_seconds')}s), {len(images)} images in {generated_in:.1f}s; "
            + ", ".join(f"{t!r}: {s:.0%}" for t, s in scores.items()),
        )
    # "a handwritten digit N", 3 images per digit: the judge must read well above chance (10%).
    assert scores["a handwritten digit {d}"] >= 0.7
    assert scores["数字{zh}"] >= 0.7
    assert scores["the number {en}"] >= 0.7


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_ensure_waits_for_a_complete_folder(tmp_path, monkeypatch):
    """A second caller finds the folder the first one finished and trains nothing."""
    import workers.imaging.demo_model as demo

    calls = []

    def fake_train(path, **kwargs):
        calls.append(path)
        build_tiny_pipeline(path)
        return Path(path)

    monkeypatch.setattr(demo, "train_digits_pipeline", fake_train)
    first = demo.ensure_digits_pipeline(tmp_path)
    second = demo.ensure_digits_pipeline(tmp_path)
    assert first == second == tmp_path / RECIPE_VERSION
    assert len(calls) == 1
