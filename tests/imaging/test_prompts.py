"""A1111 prompt syntax and weighted long-prompt encoding (workers.imaging.prompts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from workers.imaging.prompts import (
    PromptSyntaxError,
    encode_for_pipeline,
    encode_weighted,
    encode_weighted_batch,
    encode_weighted_sdxl,
    extract_embeddings,
    extract_loras,
    parse_prompt_attention,
    tokenize_weighted,
)

# --------------------------------------------------------------------------------------------
# parse_prompt_attention: A1111's doc-test examples, then the edges of its grammar
# --------------------------------------------------------------------------------------------

A1111_EXAMPLES = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ["a ", 1.0],
            ["house", 1.5730000000000004],
            [" ", 1.1],
            ["on", 1.0],
            [" a ", 1.1],
            ["hill", 0.55],
            [", sun, ", 1.1],
            ["sky", 1.4641000000000006],
            [".", 1.1],
        ],
    ),
]


@pytest.mark.parametrize(("prompt", "expected"), A1111_EXAMPLES)
def test_it_matches_a1111_documented_examples_exactly(prompt, expected):
    assert parse_prompt_attention(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("[unbalanced", [["unbalanced", 1 / 1.1]]),
        (
            "(one (two (three)))",
            [["one ", 1.1], ["two ", 1.2100000000000002], ["three", 1.3310000000000004]],
        ),
        ("hello, world", [["hello, world", 1.0]]),
        ("", [["", 1.0]]),
        ("[[a]]", [["a", 1 / 1.1 / 1.1]]),
        ("(x : 1.5 )", [["x ", 1.5]]),
        ("(a:b)", [["a:b", 1.1]]),
        ("a:1.5)", [["a:1.5)", 1.0]]),
        ("a)b]", [["a)b]", 1.0]]),
        ("\\\\", [["\\", 1.0]]),
        ("a \\(b\\) c", [["a (b) c", 1.0]]),
        ("(neg:-1)", [["neg", -1.0]]),
        ("(x:1.2) [y] (z:1.2)", [["x", 1.2], [" ", 1.0], ["y", 1 / 1.1], [" ", 1.0], ["z", 1.2]]),
    ],
)
def test_it_handles_nesting_escapes_and_unbalanced_brackets_as_a1111(prompt, expected):
    assert parse_prompt_attention(prompt) == expected


def test_break_is_a_separate_marker():
    assert parse_prompt_attention("a cat BREAK a dog") == [
        ["a cat", 1.0],
        ["BREAK", -1],
        ["a dog", 1.0],
    ]
    # A1111 multiplies the marker like any fragment; the parser keeps that exactly.
    assert parse_prompt_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]
    # BREAK is a whole word only
    assert parse_prompt_attention("BREAKFAST") == [["BREAKFAST", 1.0]]


def test_an_unreadable_weight_is_a_typed_error():
    with pytest.raises(PromptSyntaxError, match="1.2.3"):
        parse_prompt_attention("a (cat:1.2.3)")
    # without an open bracket the same text is plain text, as in A1111
    assert parse_prompt_attention("cat:1.2.3)") == [["cat:1.2.3)", 1.0]]


# --------------------------------------------------------------------------------------------
# LoRA tags and embeddings
# --------------------------------------------------------------------------------------------


def test_it_extracts_lora_tags_with_weights():
    prompt, loras = extract_loras("a cat <lora:ink style:0.8>, <lora:sharp> on a mat")
    assert prompt == "a cat ,  on a mat"
    assert loras == [("ink style", 0.8), ("sharp", 1.0)]


def test_lora_tags_accept_a1111_variants():
    _, loras = extract_loras("<lora:a:0.5:0.3> <lyco:b:te=0.7> <lora:c:unet=0.4> <lora:d:-1>")
    assert loras == [("a", 0.5), ("b", 0.7), ("c", 0.4), ("d", -1.0)]
    # a name given twice keeps its first position and the last weight
    assert extract_loras("<lora:a:0.2> <lora:b> <lora:a:0.9>")[1] == [("a", 0.9), ("b", 1.0)]


def test_other_extra_networks_are_left_in_place():
    assert extract_loras("x <hypernet:h:1> y") == ("x <hypernet:h:1> y", [])


def test_a_bad_lora_weight_is_a_typed_error():
    with pytest.raises(PromptSyntaxError, match="not a number"):
        extract_loras("<lora:style:strong>")


def test_it_finds_known_embeddings_by_name():
    prompt = "(EasyNegative:1.2), bad-hands-5, ugly <lora:badhand:1>, negxl"
    known = ["easynegative", "bad-hands-5", "hands", "badhand", "neg", "unused"]
    # case-insensitive; longer names consume their text; names inside <lora:...> do not count
    assert extract_embeddings(prompt, known) == ["easynegative", "bad-hands-5"]
    assert extract_embeddings("a photo", known) == []


# --------------------------------------------------------------------------------------------
# A tiny CLIP text side built in code
# --------------------------------------------------------------------------------------------

WORDS = ["a", "photo", "of", "cat", "house", "hill", "sky", "sun", "on", "blurry", "ugly", "dog"]


def _tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges = []
    for word in WORDS:  # each word becomes one token, as in the real CLIP vocabulary
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merges.append((current, piece))
            current += piece
            vocab.setdefault(current, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=77,
        bos_token_id=0,  # the ids of the tiny tokenizer's start and end tokens
        eos_token_id=1,
        pad_token_id=1,
    )
    model = CLIPTextModel(config).eval()
    # A fresh final norm has zero bias, so every hidden state has a mean of float noise; a
    # trained CLIP's bias gives it a real mean, which the "Original" emphasis restores.
    torch.nn.init.normal_(model.final_layer_norm.bias, mean=0.1, std=0.05)
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return _tokenizer()


@pytest.fixture(scope="module")
def text_side(tokenizer):
    return SimpleNamespace(tokenizer=tokenizer, text_encoder=_text_encoder())


@pytest.fixture(scope="module")
def pipe(tokenizer):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=_text_encoder(),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------------------
# tokenize_weighted: A1111's chunking
# --------------------------------------------------------------------------------------------


def test_a_short_prompt_is_one_padded_chunk_with_weights(tokenizer):
    (chunk,) = tokenize_weighted(tokenizer, "a (house:1.5) [sky]")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    words = _ids(tokenizer, "a house sky")
    assert chunk.tokens == [bos, *words, eos] + [tokenizer.pad_token_id] * 72
    assert chunk.weights[:5] == [1.0, 1.0, 1.5, 1 / 1.1, 1.0]
    assert set(chunk.weights[5:]) == {1.0}
    assert chunk.length == 3
    # and it is what diffusers' tokenizer call gives
    expected = tokenizer("a house sky", padding="max_length", max_length=77, truncation=True)
    assert chunk.tokens == expected["input_ids"]


def test_an_empty_prompt_is_one_empty_chunk(tokenizer):
    (chunk,) = tokenize_weighted(tokenizer, "")
    assert chunk.tokens[:2] == [tokenizer.bos_token_id, tokenizer.eos_token_id]
    assert len(chunk.tokens) == 77 and chunk.length == 0


def test_long_prompts_split_every_75_tokens(tokenizer):
    assert len(tokenize_weighted(tokenizer, "cat " * 75)) == 1
    chunks = tokenize_weighted(tokenizer, "cat " * 76)
    assert [c.length for c in chunks] == [75, 1]
    assert all(len(c.tokens) == 77 and len(c.weights) == 77 for c in chunks)
    assert len(tokenize_weighted(tokenizer, "cat " * 200)) == 3


def test_break_starts_a_new_chunk(tokenizer):
    chunks = tokenize_weighted(tokenizer, "a cat BREAK a dog")
    assert [c.length for c in chunks] == [2, 2]
    assert chunks[1].tokens[1:3] == _ids(tokenizer, "a dog")
    # a trailing BREAK adds no empty chunk; BREAK inside brackets still breaks (see module doc)
    assert len(tokenize_weighted(tokenizer, "a cat BREAK")) == 1
    chunks = tokenize_weighted(tokenizer, "(a cat BREAK a dog)")
    assert [c.length for c in chunks] == [2, 2]
    assert chunks[1].weights[1:3] == [1.1, 1.1]


def test_a_full_chunk_moves_the_words_after_its_last_comma(tokenizer):
    prompt = "cat " * 70 + ", " + "dog " * 10
    chunks = tokenize_weighted(tokenizer, prompt)
    assert [c.length for c in chunks] == [71, 10]  # the comma stays, the 4 dogs move
    assert chunks[0].tokens[71] == tokenizer.get_vocab()[",</w>"]
    no_backtrack = tokenize_weighted(tokenizer, prompt, comma_padding_backtrack=0)
    assert [c.length for c in no_backtrack] == [75, 6]
    far = tokenize_weighted(tokenizer, "cat " * 50 + ", " + "dog " * 30)
    assert [c.length for c in far] == [75, 6]  # comma 24 tokens back: beyond the default 20


def test_emphasis_modes(tokenizer):
    (ignored,) = tokenize_weighted(tokenizer, "a (cat:1.5)", emphasis="Ignore")
    assert set(ignored.weights) == {1.0}
    assert ignored.tokens[1:3] == _ids(tokenizer, "a cat")
    (literal,) = tokenize_weighted(tokenizer, "a (cat:1.5)", emphasis="None")
    assert literal.tokens[1 : literal.length + 1] == _ids(tokenizer, "a (cat:1.5)")
    with pytest.raises(ValueError, match="emphasis"):
        tokenize_weighted(tokenizer, "a", emphasis="Loud")


def test_multi_vector_embeddings_expand_like_diffusers(tokenizer):
    tok = _tokenizer()
    tok.add_tokens(["<style>", "<style>_1", "<style>_2"])
    (chunk,) = tokenize_weighted(tok, "a (<style>:1.2)")
    ids = tok.convert_tokens_to_ids(["<style>", "<style>_1", "<style>_2"])
    assert chunk.tokens[2:5] == ids
    assert chunk.weights[2:5] == [1.2, 1.2, 1.2]


# --------------------------------------------------------------------------------------------
# encode_weighted
# --------------------------------------------------------------------------------------------


def test_unit_weights_give_exactly_diffusers_embeddings(pipe):
    ours, ours_neg = encode_weighted(pipe, "a photo of a cat on a hill", "blurry, ugly")
    theirs, theirs_neg = pipe.encode_prompt(
        "a photo of a cat on a hill",
        device=torch.device("cpu"),
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt="blurry, ugly",
    )
    assert ours.shape == (1, 77, 32)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours_neg, theirs_neg)


def test_clip_skip_counts_like_a1111(text_side):
    tokenizer, encoder = text_side.tokenizer, text_side.text_encoder
    ours, negative = encode_weighted(text_side, "a photo of a cat", clip_skip=2)
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=77)["input_ids"]
    with torch.no_grad():
        hidden = encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states
        expected = encoder.final_layer_norm(hidden[-2])  # A1111 "Clip skip: 2"
    assert torch.equal(ours, expected)
    assert not torch.equal(ours, encode_weighted(text_side, "a photo of a cat")[0])
    with pytest.raises(ValueError, match="clip_skip"):
        encode_weighted(text_side, "a", clip_skip=0)


def test_weights_scale_hidden_states_and_restore_the_mean(text_side):
    tokenizer, encoder = text_side.tokenizer, text_side.text_encoder
    ours, _ = encode_weighted(text_side, "a (cat:1.5) [dog]")
    ids = torch.tensor([tokenizer("a cat dog", padding="max_length", max_length=77)["input_ids"]])
    with torch.no_grad():
        z = encoder(ids)[0]
    weights = torch.ones(1, 77, 1)
    weights[0, 2], weights[0, 3] = 1.5, 1 / 1.1
    expected = z * weights
    expected = expected * (z.mean() / expected.mean())
    torch.testing.assert_close(ours, expected)
    assert not torch.equal(ours, z)

    assert torch.isclose(ours.mean(), z.mean())
    no_norm, _ = encode_weighted(text_side, "a (cat:1.5) [dog]", emphasis="No norm")
    torch.testing.assert_close(no_norm, z * weights)


def test_a_mean_of_float_noise_is_not_restored(tokenizer):
    encoder = _text_encoder()
    torch.nn.init.zeros_(encoder.final_layer_norm.bias)  # hidden-state mean ~1e-8: noise
    pair = (tokenizer, encoder)
    original, _ = encode_weighted(pair, "a (cat:1.5) [dog]")
    no_norm, _ = encode_weighted(pair, "a (cat:1.5) [dog]", emphasis="No norm")
    assert torch.equal(original, no_norm)


def test_long_prompts_are_encoded_chunk_by_chunk_and_concatenated(text_side):
    tokenizer, encoder = text_side.tokenizer, text_side.text_encoder
    prompt = "a photo of a cat " * 20  # 100 tokens: two chunks
    embeds, negative = encode_weighted(text_side, prompt, "blurry")
    assert embeds.shape == negative.shape == (1, 154, 32)

    chunks = tokenize_weighted(tokenizer, prompt)
    with torch.no_grad():
        first = encoder(torch.tensor([chunks[0].tokens]))[0]
        second = encoder(torch.tensor([chunks[1].tokens]))[0]
        empty = encoder(torch.tensor([tokenize_weighted(tokenizer, "")[0].tokens]))[0]
    torch.testing.assert_close(embeds[:, :77], first)
    torch.testing.assert_close(embeds[:, 77:], second)
    # the shorter negative prompt is padded with the empty prompt's encoding
    torch.testing.assert_close(negative[:, 77:], empty)


def test_a_batch_pads_to_the_longest_and_matches_single_encodes(text_side):
    prompts = ["a cat", "a (dog:1.3) on a hill"]
    embeds, negative = encode_weighted_batch(text_side, prompts, ["ugly", ""])
    assert embeds.shape == negative.shape == (2, 77, 32)
    for i, prompt in enumerate(prompts):
        single, single_neg = encode_weighted(text_side, prompt, ["ugly", ""][i])
        assert torch.equal(embeds[i : i + 1], single)
        assert torch.equal(negative[i : i + 1], single_neg)

    long_batch, _ = encode_weighted_batch(text_side, ["a cat", "cat " * 80])
    assert long_batch.shape == (2, 154, 32)
    with pytest.raises(ValueError, match="negative"):
        encode_weighted_batch(text_side, ["a"], ["b", "c"])


def test_it_accepts_a_tokenizer_and_encoder_pair(text_side):
    pair = (text_side.tokenizer, text_side.text_encoder)
    assert torch.equal(encode_weighted(pair, "a cat")[0], encode_weighted(text_side, "a cat")[0])


def test_two_encoder_pipelines_are_refused_clearly(text_side):
    sdxl_like = SimpleNamespace(
        tokenizer=text_side.tokenizer, text_encoder=text_side.text_encoder, text_encoder_2=object()
    )
    with pytest.raises(NotImplementedError, match="SDXL"):
        encode_weighted(sdxl_like, "a cat")


def test_the_embeddings_drive_a_stable_diffusion_pipeline(pipe):
    def run(**kwargs):
        return pipe(
            num_inference_steps=2,
            height=16,
            width=16,
            guidance_scale=7.0,
            generator=torch.Generator().manual_seed(7),
            output_type="np",
            **kwargs,
        ).images

    embeds, negative = encode_weighted(pipe, "a photo of a cat", "blurry")
    from_embeds = run(prompt_embeds=embeds, negative_prompt_embeds=negative)
    from_text = run(prompt="a photo of a cat", negative_prompt="blurry")
    assert from_embeds.shape == (1, 16, 16, 3)
    assert (from_embeds == from_text).all()

    embeds, negative = encode_weighted(pipe, "(a photo:1.4) of a cat BREAK " + "sky " * 90, "")
    assert embeds.shape[1] == 77 * 3
    weighted = run(prompt_embeds=embeds, negative_prompt_embeds=negative, num_images_per_prompt=2)
    assert weighted.shape == (2, 16, 16, 3)


# --------------------------------------------------------------------------------------------
# SDXL: two encoders and pooled embeddings
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdxl_pipe():
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size/crop ids + pooled width
        cross_attention_dim=64,  # both encoders' widths side by side
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=1000,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    tokenizer_2 = _tokenizer()
    tokenizer_2.pad_token = "!"  # like SDXL's OpenCLIP tokenizer: padding differs from the end
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config).eval(),
        text_encoder_2=CLIPTextModelWithProjection(config).eval(),
        tokenizer=_tokenizer(),
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sdxl_unit_weights_give_exactly_diffusers_embeddings(sdxl_pipe):
    assert sdxl_pipe.tokenizer_2.pad_token_id != sdxl_pipe.tokenizer_2.eos_token_id
    cpu = torch.device("cpu")
    ours = encode_weighted_sdxl(sdxl_pipe, "a photo of a cat", "blurry")
    theirs = sdxl_pipe.encode_prompt(
        "a photo of a cat", device=cpu, negative_prompt="blurry", do_classifier_free_guidance=True
    )
    assert ours[0].shape == (1, 77, 64) and ours[2].shape == (1, 32)
    for mine, reference in zip(ours, theirs, strict=True):
        assert torch.equal(mine, reference)

    # no negative prompt: zeros, as diffusers (force_zeros_for_empty_prompt) and A1111 do
    ours = encode_weighted_sdxl(sdxl_pipe, "a photo of a cat", "")
    theirs = sdxl_pipe.encode_prompt("a photo of a cat", device=cpu)
    for mine, reference in zip(ours, theirs, strict=True):
        assert torch.equal(mine, reference)
    assert not ours[1].any() and not ours[3].any()


def test_sdxl_weights_and_long_prompts(sdxl_pipe):
    plain = encode_weighted_sdxl(sdxl_pipe, "a photo of a cat")
    weighted = encode_weighted_sdxl(sdxl_pipe, "a photo of a (cat:1.4)")
    assert not torch.equal(plain[0], weighted[0])
    assert torch.equal(plain[2], weighted[2])  # the pooled embedding carries no weights

    embeds, negative, pooled, negative_pooled = encode_weighted_sdxl(
        sdxl_pipe, "a cat BREAK a dog", "ugly " * 80
    )
    assert embeds.shape == negative.shape == (1, 154, 64)
    assert pooled.shape == negative_pooled.shape == (1, 32)


def test_encode_for_pipeline_serves_both_families(pipe, sdxl_pipe):
    def run(p, **kwargs):
        return p(
            num_inference_steps=2,
            height=16,
            width=16,
            generator=torch.Generator().manual_seed(3),
            output_type="np",
            **kwargs,
        ).images

    sd = encode_for_pipeline(pipe, ["a cat", "a (dog:1.2)"], ["", "blurry"])
    assert set(sd) == {"prompt_embeds", "negative_prompt_embeds"}
    assert run(pipe, **sd).shape == (2, 16, 16, 3)

    xl = encode_for_pipeline(sdxl_pipe, "a photo of a cat", "blurry")
    assert set(xl) == {
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    }
    from_embeds = run(sdxl_pipe, **xl)
    from_text = run(sdxl_pipe, prompt="a photo of a cat", negative_prompt="blurry")
    assert (from_embeds == from_text).all()
    with pytest.raises(NotImplementedError, match="encode_weighted_sdxl"):
        encode_weighted(sdxl_pipe, "a cat")
    with pytest.raises(ValueError, match="text_encoder_2"):
        encode_weighted_sdxl(pipe, "a cat")
