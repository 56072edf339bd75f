"""Textual-inversion embeddings by name, and the hi-res fix with an image-upscaler callable.

On the tiny random pipeline (test_pipelines.py): 64 px, a few steps, CPU. An embedding here is
random vectors of the text encoder's width saved as A1111 does (``{"emb_params": [n, width]}``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.imaging.pixels import assert_same_up_to_rounding
from workers.imaging.pipeline import (
    GenerationRequest,
    HiresFix,
    InvalidRequest,
    ModelRefused,
    generate_batch,
    generate_images,
    load_pipeline,
)
from workers.imaging.prompts import tokenize_weighted

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
]


def width_of(pipe) -> int:
    return pipe.text_encoder.get_input_embeddings().weight.shape[-1]


def save_embedding(path, tensors: dict) -> str:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def embeddings(pipe, tmp_path_factory):
    """Two A1111-format embeddings: one vector and two vectors, with large random values."""
    folder = tmp_path_factory.mktemp("embeddings")
    generator = torch.Generator().manual_seed(7)
    dim = width_of(pipe)
    return {
        "one": save_embedding(
            folder / "easynegative.safetensors",
            {"emb_params": torch.randn(1, dim, generator=generator) * 3},
        ),
        "two": save_embedding(
            folder / "badhands.safetensors",
            {"emb_params": torch.randn(2, dim, generator=generator) * 3},
        ),
    }


def request(**overrides) -> GenerationRequest:
    fields = {
        "prompt": "a house on a hill",
        "negative_prompt": "blurry",
        "sampler": "Euler a",
        "steps": 4,
        "cfg_scale": 7.0,
        "seed": 99,
        "width": 64,
        "height": 64,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


def pixels(pipe, req) -> bytes:
    return generate_images(pipe, req)[0].image.tobytes()


def text_side_state(pipe):
    """What an embedding could leave behind: the tokenizer and the token-embedding matrix."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    module = encoder.get_input_embeddings()
    return {
        "tokenizer": tokenizer,
        "len": len(tokenizer),
        "vocab": tokenizer.get_vocab(),
        "added": dict(tokenizer.added_tokens_encoder),
        "module": module,
        "weight": module.weight.detach().clone(),
        "forward patched": "forward" in module.__dict__,
        "vocab_size": encoder.config.vocab_size,
        "eos": getattr(getattr(encoder, "text_model", encoder), "eos_token_id", None),
    }


def assert_same_state(before, after):
    assert after["tokenizer"] is before["tokenizer"]
    assert after["module"] is before["module"]
    assert torch.equal(after["weight"], before["weight"])
    for key in ("len", "vocab", "added", "forward patched", "vocab_size", "eos"):
        assert after[key] == before[key], key


# ---------------------------------------------------------------- embeddings


def test_an_embedding_changes_the_image_reproducibly_and_leaves_the_pipeline_as_it_was(
    pipe, embeddings
):
    before = text_side_state(pipe)
    plain = request(negative_prompt="easynegative, blurry")
    untouched = pixels(pipe, plain)  # no embedding given: the name is just words

    with_embedding = replace(plain, embeddings=[("easynegative", embeddings["one"])])
    first = generate_images(pipe, with_embedding)[0]
    again = generate_images(pipe, with_embedding)[0]

    assert first.image.tobytes() != untouched
    assert again.image.tobytes() == first.image.tobytes()
    assert_same_state(before, text_side_state(pipe))
    assert pixels(pipe, plain) == untouched  # bit-identical to before any embedding was loaded


def test_ti_hashes_are_recorded_the_a1111_way(pipe, embeddings):
    with open(embeddings["one"], "rb") as fh:
        short = hashlib.sha256(fh.read()).hexdigest()[:12]
    req = request(negative_prompt="EasyNegative", embeddings=[("easynegative", embeddings["one"])])
    [result] = generate_images(pipe, req)
    assert result.params["TI hashes"] == f"easynegative: {short}"
    assert 'TI hashes: "easynegative: ' in result.infotext
    assert result.negative_prompt == "EasyNegative"  # the prompt as written, not its tokens


def test_names_match_like_a1111_without_case_and_as_whole_words(pipe, embeddings):
    given = [("easynegative", embeddings["one"])]
    lower = pixels(pipe, request(negative_prompt="easynegative", embeddings=given))
    mixed = pixels(pipe, request(negative_prompt="EasyNegative", embeddings=given))
    assert mixed == lower
    # Inside another word the name is not the embedding: the same as without it.
    inside = request(negative_prompt="noteasynegatives")
    assert pixels(pipe, inside) == pixels(
        pipe, request(negative_prompt="noteasynegatives", embeddings=given)
    )


def test_unused_embeddings_are_not_read(pipe, embeddings, tmp_path):
    missing = str(tmp_path / "missing.safetensors")
    pickled = str(tmp_path / "old.pt")
    req = request(embeddings=[("unused", missing), ("oldstyle", pickled)])
    assert pixels(pipe, req) == pixels(pipe, request())


def test_a_multi_vector_embedding_works_with_weights(pipe, embeddings):
    given = [("bad-hands", embeddings["two"])]
    base = pixels(pipe, request(prompt="a house"))
    plain = pixels(pipe, request(prompt="a house, bad-hands", embeddings=given))
    weighted = pixels(pipe, request(prompt="a house, (bad-hands:1.4)", embeddings=given))
    assert len({base, plain, weighted}) == 3
    assert pixels(pipe, request(prompt="a house, (bad-hands:1.4)", embeddings=given)) == weighted


def test_each_vector_of_a_multi_vector_embedding_is_a_token(pipe, embeddings):
    from workers.imaging.pipeline import embedding_text, read_embedding, token_pool

    used = [read_embedding("bad-hands", embeddings["two"])]
    tokenizer, tokens = token_pool(pipe.tokenizer, 2)
    text = embedding_text(used, tokens)("x, (Bad-Hands:1.2)")
    [chunk] = tokenize_weighted(tokenizer, text)
    ids = chunk.tokens[1 : chunk.length + 1]
    first = len(pipe.tokenizer)
    assert ids[-2:] == [first, first + 1]
    assert chunk.weights[chunk.length - 1 : chunk.length + 1] == [1.2, 1.2]


def test_diffusers_multi_vector_tokens_expand_whatever_their_case(tiny_path):
    """prompts.py's expansion of what diffusers' load_textual_inversion registers (used when a
    caller loads embeddings that way), for a mixed-case name CLIP's tokenizer lowercases."""
    other = load_pipeline(tiny_path, device="cpu", dtype="float32")
    other.load_textual_inversion(torch.randn(3, width_of(other)), token="BadHand")
    for text in ("a (BadHand:1.2)", "a (badhand:1.2)"):
        [chunk] = tokenize_weighted(other.tokenizer, text)
        assert chunk.length == 1 + 3
        assert chunk.tokens[2:5] == other.tokenizer.convert_tokens_to_ids(
            ["BadHand", "BadHand_1", "BadHand_2"]
        )
        assert chunk.weights[2:5] == [1.2] * 3


def test_batched_requests_with_embeddings_match_their_solo_images(pipe, embeddings):
    given = [("easynegative", embeddings["one"]), ("bad-hands", embeddings["two"])]
    requests = [
        request(negative_prompt="easynegative", embeddings=given, seed=1),
        request(negative_prompt="easynegative, blurry", embeddings=given, seed=2),
        request(prompt="a house, bad-hands", embeddings=given, seed=3),
        request(seed=4),
    ]
    solo = [generate_images(pipe, r)[0].image for r in requests]
    batched = generate_batch(pipe, requests)
    # One call against each alone: other shapes, so up to rounding (tests/imaging/pixels.py).
    for images, alone, req in zip(batched, solo, requests, strict=True):
        assert_same_up_to_rounding(images[0].image, alone, f"seed {req.seed}")


def test_a_pickle_embedding_is_refused(pipe, tmp_path):
    path = tmp_path / "easynegative.pt"
    path.write_bytes(b"\x80\x04K\x01.")  # never opened
    req = request(negative_prompt="easynegative", embeddings=[("easynegative", str(path))])
    with pytest.raises(ModelRefused, match="pickle"):
        generate_images(pipe, req)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 64)}, "SDXL embedding"),
        ({"emb_params": torch.zeros(2, 768)}, "width 768"),
        ({"a": torch.zeros(1, 32), "b": torch.zeros(1, 32)}, "not a textual-inversion"),
        ({"emb_params": torch.zeros(76, 32)}, "1..75 vectors"),
    ],
)
def test_embeddings_that_do_not_fit_are_refused_clearly(pipe, tmp_path, tensors, message):
    path = save_embedding(tmp_path / "e.safetensors", tensors)
    before = text_side_state(pipe)
    req = request(prompt="a house, thing", embeddings=[("thing", path)])
    with pytest.raises(ModelRefused, match=message):
        generate_images(pipe, req)
    assert_same_state(before, text_side_state(pipe))


def test_the_pipeline_is_restored_when_encoding_fails(pipe, embeddings, monkeypatch):
    from workers.imaging.pipeline import encoding

    before = text_side_state(pipe)

    def broken(*args, **kwargs):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(encoding, "encode_prompts", broken)
    req = request(negative_prompt="easynegative", embeddings=[("easynegative", embeddings["one"])])
    with pytest.raises(RuntimeError, match="encoder failed"):
        generate_images(pipe, req)
    assert_same_state(before, text_side_state(pipe))


def test_diffusers_format_embedding_is_read(pipe, embeddings, tmp_path):
    from safetensors.torch import load_file

    vectors = load_file(embeddings["two"])["emb_params"]
    path = save_embedding(tmp_path / "diffusers.safetensors", {"<bad-hands>": vectors})
    a1111 = pixels(pipe, request(prompt="bad-hands", embeddings=[("bad-hands", embeddings["two"])]))
    assert pixels(pipe, request(prompt="bad-hands", embeddings=[("bad-hands", path)])) == a1111


@pytest.mark.parametrize(
    "embeddings",
    [
        [("", "a.safetensors")],
        [("name", "")],
        [("name",)],
        [("x", "a.safetensors"), ("X", "b.safetensors")],
    ],
)
def test_invalid_embedding_lists_are_refused(embeddings):
    with pytest.raises(InvalidRequest):
        request(embeddings=embeddings)


# ---------------------------------------------------------------- SDXL: two text encoders


@pytest.fixture(scope="module")
def sdxl_pipe():
    """A tiny random SDXL pipeline built in code: CLIP widths 32 and 48, so the two sets of
    vectors cannot be swapped unnoticed; old-style ``eos_token_id`` 2 as in SDXL's configs."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from workers.imaging.demo_model import build_clip_tokenizer, make_scheduler, make_vae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tokenizer, tokenizer_2 = build_clip_tokenizer(), build_clip_tokenizer()

        def config(width):
            return CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=width,
                intermediate_size=width * 2,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=width,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=2,
                pad_token_id=tokenizer.pad_token_id,
            )

        unet = UNet2DConditionModel(
            sample_size=8,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32 + 48,
            attention_head_dim=8,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=48 + 6 * 8,
        )
        pipe = StableDiffusionXLPipeline(
            vae=make_vae(64),
            text_encoder=CLIPTextModel(config(32)),
            text_encoder_2=CLIPTextModelWithProjection(config(48)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=make_scheduler(),
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_embedding(tmp_path_factory):
    generator = torch.Generator().manual_seed(3)
    return save_embedding(
        tmp_path_factory.mktemp("sdxl") / "xl-negative.safetensors",
        {
            "clip_l": torch.randn(2, 32, generator=generator) * 3,
            "clip_g": torch.randn(2, 48, generator=generator) * 3,
        },
    )


def sdxl_state(pipe):
    from types import SimpleNamespace

    second = SimpleNamespace(tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2)
    return text_side_state(pipe), text_side_state(second)


def test_sdxl_embedding_goes_into_both_text_encoders_and_is_removed_after(
    sdxl_pipe, sdxl_embedding
):
    before = sdxl_state(sdxl_pipe)
    plain = request(negative_prompt="xl-negative", steps=3)
    untouched = pixels(sdxl_pipe, plain)
    given = replace(plain, embeddings=[("xl-negative", sdxl_embedding)])
    first = pixels(sdxl_pipe, given)
    assert first != untouched
    assert pixels(sdxl_pipe, given) == first
    for was, now in zip(before, sdxl_state(sdxl_pipe), strict=True):
        assert_same_state(was, now)
    assert pixels(sdxl_pipe, plain) == untouched


def test_sdxl_pooled_embedding_is_taken_at_the_end_token(sdxl_pipe, sdxl_embedding):
    from workers.imaging.pipeline import embeddings_applied, read_embedding

    used = [read_embedding("xl-negative", sdxl_embedding)]
    encoder = sdxl_pipe.text_encoder_2
    with embeddings_applied(sdxl_pipe, used) as rewrite, torch.no_grad():
        ids = sdxl_pipe.tokenizer_2(
            rewrite("a xl-negative"), padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
        assert int(ids.max()) > sdxl_pipe.tokenizer_2.eos_token_id  # a private token
        out = encoder(ids)
        end = int((ids[0] == sdxl_pipe.tokenizer_2.eos_token_id).nonzero()[0])
        expected = encoder.text_projection(out.last_hidden_state[0, end])
    torch.testing.assert_close(out.text_embeds[0], expected)
    assert encoder.text_model.eos_token_id == 2  # restored


def test_sd_embedding_on_sdxl_is_refused(sdxl_pipe, embeddings):
    req = request(prompt="easynegative", embeddings=[("easynegative", embeddings["one"])])
    with pytest.raises(ModelRefused, match="SD 1.x/2.x embedding"):
        generate_images(sdxl_pipe, req)


# ---------------------------------------------------------------- hi-res fix with an upscaler


class NearestUpscaler:
    """A stand-in for an ESRGAN model: nearest-neighbour ×2, records what it was given."""

    name = "4x-Test"

    def __init__(self, factor: int = 2) -> None:
        self.factor = factor
        self.calls: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def __call__(self, image, size):
        self.calls.append((image.size, tuple(size)))
        w, h = image.size
        return image.resize((w * self.factor, h * self.factor), Image.Resampling.NEAREST)


def test_hires_fix_with_an_upscaler_callable(pipe):
    upscaler = NearestUpscaler(factor=4)  # 32 → 128, then Lanczos to the 1.5× target (48)
    hires = {"scale": 1.5, "steps": 4, "denoise": 0.5, "upscaler": upscaler}
    req = request(width=32, height=32, steps=4, hires=hires, batch_size=2)
    results = generate_images(pipe, req)
    assert upscaler.calls == [((32, 32), (48, 48))] * 2
    assert [r.image.size for r in results] == [(48, 48)] * 2
    assert results[0].params["Hires upscaler"] == "4x-Test"
    assert results[0].params["Hires resize"] == "48x48"
    again = generate_images(pipe, req)
    assert again[0].image.tobytes() == results[0].image.tobytes()


def test_an_upscaler_without_a_name_is_custom_and_its_image_is_used(pipe):
    def black(image, size):
        return Image.new("RGB", size)

    def white(image, size):
        return Image.new("RGB", size, "white")

    def run(upscaler):
        hires = {"scale": 2, "steps": 2, "denoise": 0.5, "upscaler": upscaler}
        return generate_images(pipe, request(width=32, height=32, steps=2, hires=hires))[0]

    dark, light = run(black), run(white)
    assert dark.params["Hires upscaler"] == "custom"
    assert dark.image.size == (64, 64)
    assert dark.image.tobytes() != light.image.tobytes()


def test_upscaler_callables_compare_by_identity_for_batching(pipe):
    first, second = NearestUpscaler(), NearestUpscaler()
    assert HiresFix(upscaler=first) == HiresFix(upscaler=first)
    assert HiresFix(upscaler=first) != HiresFix(upscaler=second)
    requests = [
        request(width=32, height=32, steps=2, seed=s, hires={"upscaler": up, "steps": 2})
        for s, up in ((1, first), (2, first), (3, second))
    ]
    results = generate_batch(pipe, requests)
    assert [len(r) for r in results] == [1, 1, 1]
    assert len(first.calls) == 2 and len(second.calls) == 1
    assert results[0][0].image.size == (64, 64)


def test_an_upscaler_that_returns_no_image_is_an_error(pipe):
    hires = {"scale": 2, "steps": 2, "upscaler": lambda image, size: None}
    with pytest.raises(TypeError, match="not a PIL image"):
        generate_images(pipe, request(width=32, height=32, steps=2, hires=hires))
