"""A1111 infotext and PNG metadata (workers.imaging.infotext)."""

from __future__ import annotations

import hashlib
import io
import zlib

import pytest
from PIL import Image, PngImagePlugin

from workers.imaging.infotext import (
    AI_GENERATED_KEY,
    DISCLOSURE_KEY,
    IPTC_TRAINED_ALGORITHMIC_MEDIA,
    RE_PARAM,
    build_infotext,
    from_form_fields,
    parse_infotext,
    quote,
    read_png_parameters,
    read_png_text,
    to_form_fields,
    write_png,
)

BASIC = {
    "Steps": 20,
    "Sampler": "DPM++ 2M Karras",
    "CFG scale": 7,
    "Seed": 1234,
    "Size": (512, 512),
    "Model hash": "abcd1234",
    "Model": "name",
}


def _image(seed: int = 0) -> Image.Image:
    pixels = bytes((i * 37 + seed * 11) % 256 for i in range(16 * 16 * 3))
    return Image.frombytes("RGB", (16, 16), pixels)


def _expected(prompt: str, negative: str, params: dict) -> dict:
    """What A1111's reader makes of build_infotext's output: strings, Size split in two."""
    res = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in params.items():
        if key == "Size":
            res["Size-1"], res["Size-2"] = (str(v) for v in value)
        else:
            res[key] = str(value)
    return res


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def test_it_writes_the_a1111_layout():
    text = build_infotext("a photo of a cat", "blurry", BASIC)
    assert text == (
        "a photo of a cat\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model hash: abcd1234, Model: name"
    )


def test_fields_come_in_a1111_order_with_extras_before_version():
    params = {
        "Version": "atelier-1.0",
        "Lora hashes": "style: 0123abcd",
        "Model": "m",
        "Seed": 1,
        "Clip skip": 2,
        "Denoising strength": 0.5,
        "Steps": 30,
        "Hires upscale": 2,
        "Sampler": "Euler a",
        "Schedule type": "Karras",
        "CFG scale": 7.5,
        "Size": "64x64",
        "VAE": None,
    }
    line = build_infotext("p", "", params).split("\n")[-1]
    assert [key for key, _ in RE_PARAM.findall(line)] == [
        "Steps",
        "Sampler",
        "Schedule type",
        "CFG scale",
        "Seed",
        "Size",
        "Model",
        "Denoising strength",
        "Clip skip",
        "Lora hashes",
        "Hires upscale",
        "Version",
    ]
    assert 'Lora hashes: "style: 0123abcd"' in line
    assert "VAE" not in line


def test_without_a_negative_prompt_there_is_no_negative_line():
    assert build_infotext("a cat", "", BASIC).split("\n")[:2] == [
        "a cat",
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
        "Model hash: abcd1234, Model: name",
    ]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("Euler a", "Euler a"),
        (7, "7"),
        (7.5, "7.5"),
        ("a, b", '"a, b"'),
        ("a: b", '"a: b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("猫, 狗", '"猫, 狗"'),
        (" padded", '" padded"'),
        ("", '""'),
    ],
)
def test_values_are_quoted_like_a1111(value, written):
    assert quote(value) == written


def test_a_label_a1111_cannot_read_is_refused():
    for bad in ("x", "Bad:key", " lead", "a,b", "é!"):
        with pytest.raises(ValueError, match="label"):
            build_infotext("p", "", {**BASIC, bad: 1})


# --------------------------------------------------------------------------------------------
# Reading, as A1111's parse_generation_parameters
# --------------------------------------------------------------------------------------------


def test_it_parses_a1111s_documented_example():
    text = (
        "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, "
        "heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), "
        "detailed, intricate\n"
        "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, "
        "disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn "
        "hands), messy drawing\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, "
        "Model hash: 45dee52b"
    )
    parsed = parse_infotext(text)
    assert parsed["Prompt"].startswith("girl with an artist's beret")
    assert parsed["Negative prompt"].endswith("(poorly drawn hands), messy drawing")
    assert {k: v for k, v in parsed.items() if "prompt" not in k.lower()} == {
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "7",
        "Seed": "965400086",
        "Size-1": "512",
        "Size-2": "512",
        "Model hash": "45dee52b",
    }


def test_multiline_prompts_and_negatives():
    text = "line one\nline two\nNegative prompt: bad\nworse\nSteps: 5, Seed: 1, Sampler: DDIM"
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "line one\nline two"
    assert parsed["Negative prompt"] == "bad\nworse"


def test_a_last_line_with_fewer_than_three_pairs_is_prompt():
    parsed = parse_infotext("a cat\nmood: calm, light: soft")
    assert parsed == {"Prompt": "a cat\nmood: calm, light: soft", "Negative prompt": ""}


def test_every_wxh_value_is_split_and_quoted_values_unquoted():
    parsed = parse_infotext(
        'p\nSteps: 5, Size: 64x32, Hires resize: 1024x768, Lora hashes: "a: 1, b: 2", '
        'TI hashes: "neg: 3", Hires upscaler: Latent'
    )
    assert parsed["Size-1"] == "64" and parsed["Size-2"] == "32"
    assert parsed["Hires resize-1"] == "1024" and parsed["Hires resize-2"] == "768"
    assert parsed["Lora hashes"] == "a: 1, b: 2"
    assert parsed["TI hashes"] == "neg: 3"
    assert parsed["Hires upscaler"] == "Latent"


TRICKY_PROMPTS = [
    ("a photo of a cat, (masterpiece:1.2), [blurry]", "lowres, bad anatomy"),
    ('she said "hello", then: "bye"', 'no "quotes", please'),
    ("ratio 16:9, time 12:30, <lora:style:0.8>", "watermark: none"),
    ("first line\nsecond line, with comma\nthird: colon", "neg one\nneg two"),
    ("一只猫坐在垫子上，水彩画风格，(杰作:1.3)", "模糊，低质量"),
    ("emoji 🐱🎨, back\\slash \\(escaped\\)", ""),
    ("", "only a negative"),
    ("Steps: 3, Seed: 4, Size: 5x5 looks like params", ""),
]


@pytest.mark.parametrize(("prompt", "negative"), TRICKY_PROMPTS)
def test_write_read_parse_round_trip(tmp_path, prompt, negative):
    params = {
        **BASIC,
        "Model": 'my "best", model: v2',
        "Lora hashes": "style: 0a1b2c3d, other: 99887766",
        "Note": "multi\nline, value",
        "Comment": "水彩, 猫",
        "Trailing": "space ",
        "Version": "atelier-0.1",
    }
    path = tmp_path / "out.png"
    write_png(_image(), path, build_infotext(prompt, negative, params))
    text = read_png_parameters(path)
    assert parse_infotext(text) == _expected(prompt, negative, params)


def test_form_fields_round_trip(tmp_path):
    fields = {
        "prompt": "a (cat:1.2), watercolour",
        "negative_prompt": "blurry",
        "steps": 25,
        "sampler": "DPM++ 2M",
        "schedule_type": "Karras",
        "cfg_scale": 6.5,
        "seed": 4294967295123,
        "width": 640,
        "height": 384,
        "model_hash": "0123abcd",
        "model": "demo-digits",
        "denoising_strength": 0.45,
        "clip_skip": 2,
        "hires_upscale": 2.0,
        "hires_steps": 10,
        "hires_upscaler": "Latent",
        "extra": {"ENSD": "31337", "Atelier job": "job-17"},
    }
    path = tmp_path / "f.png"
    write_png(_image(), path, build_infotext(*from_form_fields(fields)))
    assert to_form_fields(parse_infotext(read_png_parameters(path))) == fields

    # Clip skip 1 is left out, as A1111 does, and comes back as the default
    minimal = {"prompt": "p", "negative_prompt": "", "steps": 20, "seed": 1, "cfg_scale": 7.0}
    text = build_infotext(*from_form_fields({**minimal, "clip_skip": 1}))
    assert "Clip skip" not in text
    assert to_form_fields(parse_infotext(text)) == {**minimal, "clip_skip": 1, "extra": {}}


def test_values_that_do_not_convert_stay_as_text():
    fields = to_form_fields({"Prompt": "p", "Steps": "many", "Seed": "12"})
    assert fields["seed"] == 12
    assert "steps" not in fields and fields["extra"] == {"Steps": "many"}


# --------------------------------------------------------------------------------------------
# PNG files
# --------------------------------------------------------------------------------------------


def test_the_png_discloses_that_it_is_ai_generated(tmp_path):
    path = tmp_path / "d.png"
    write_png(_image(), path, build_infotext("a cat", "", BASIC))
    texts = read_png_text(path)
    assert texts[AI_GENERATED_KEY] == "true"
    assert texts[DISCLOSURE_KEY] == "Generated by AI (Atelier)"
    assert texts["Software"] == "Atelier"
    xmp = texts["XML:com.adobe.xmp"]
    assert f'Iptc4xmpExt:DigitalSourceType="{IPTC_TRAINED_ALGORITHMIC_MEDIA}"' in xmp
    # Pillow (what A1111 itself reads with) sees the same chunks
    with Image.open(path) as im:
        assert im.info["parameters"] == texts["parameters"]
        assert im.info[DISCLOSURE_KEY] == "Generated by AI (Atelier)"
        assert im.size == (16, 16)


def test_non_latin_infotext_goes_to_an_itxt_chunk(tmp_path):
    path = tmp_path / "zh.png"
    infotext = build_infotext("一只猫", "模糊", BASIC)
    write_png(_image(), path, infotext)
    data = path.read_bytes()
    assert b"iTXtparameters\x00" in data
    assert read_png_parameters(data) == infotext
    with Image.open(path) as im:
        assert im.text["parameters"] == infotext


def test_the_same_image_and_text_give_the_same_bytes_and_hash(tmp_path):
    text = build_infotext("a cat", "x", BASIC)
    first = write_png(_image(), tmp_path / "a.png", text)
    second = write_png(_image(), tmp_path / "b.png", text)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert first == second == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    assert write_png(_image(seed=1), tmp_path / "c.png", text) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]  # no temps


def test_it_writes_to_a_file_object_and_reads_bytes_paths_and_streams(tmp_path):
    buffer = io.BytesIO()
    digest = write_png(_image(), buffer, "p\nSteps: 1, Seed: 2, CFG scale: 3")
    data = buffer.getvalue()
    assert digest == hashlib.sha256(data).hexdigest()
    path = tmp_path / "s.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data)):
        assert read_png_parameters(source) == "p\nSteps: 1, Seed: 2, CFG scale: 3"


def test_extra_text_chunks(tmp_path):
    path = tmp_path / "e.png"
    write_png(_image(), path, "p", {"atelier_output": "42", "Comment": "水彩"})
    texts = read_png_text(path)
    assert texts["atelier_output"] == "42" and texts["Comment"] == "水彩"
    for key in ("parameters", DISCLOSURE_KEY, AI_GENERATED_KEY):
        with pytest.raises(ValueError, match="replace"):
            write_png(_image(), tmp_path / "x.png", "p", {key: "no"})
    for key in ("", " lead", "x" * 80, "猫"):
        with pytest.raises(ValueError, match="keyword"):
            write_png(_image(), tmp_path / "x.png", "p", {key: "no"})


def test_it_reads_compressed_chunks_written_by_other_tools(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "zipped, latin-1 é\nSteps: 1, Seed: 2, CFG scale: 3", zip=True)
    info.add_itxt("Comment", "压缩的文字", zip=True)
    path = tmp_path / "z.png"
    _image().save(path, pnginfo=info)
    assert b"zTXt" in path.read_bytes()
    texts = read_png_text(path)
    assert texts["parameters"].startswith("zipped, latin-1 é")
    assert texts["Comment"] == "压缩的文字"


def test_a_png_without_parameters_gives_none_and_other_files_an_error(tmp_path):
    buffer = io.BytesIO()
    _image().save(buffer, format="PNG")
    assert read_png_parameters(buffer.getvalue()) is None
    jpeg = io.BytesIO()
    _image().save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match="not a PNG"):
        read_png_parameters(jpeg.getvalue())
    with pytest.raises(ValueError, match="not a PNG"):
        read_png_parameters(b"")


def test_a_decompression_bomb_chunk_is_skipped():
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    buffer = io.BytesIO()
    _image().save(buffer, format="PNG")
    png = buffer.getvalue()
    bomb = chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"a" * (16 * 1024 * 1024)))
    data = png[:33] + bomb + png[33:]  # after IHDR
    assert read_png_parameters(data) is None
