"""A1111 infotext and PNG metadata (workers.imaging.infotext)."""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import tracemalloc
import zlib

import pytest
from PIL import Image, PngImagePlugin

from workers.imaging.infotext import (
    AI_GENERATED_KEY,
    DISCLOSURE_KEY,
    IPTC_TRAINED_ALGORITHMIC_MEDIA,
    RE_PARAM,
    PngTextError,
    build_infotext,
    check_png_text,
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
    texts = read_png_text(path, keys=None)
    assert texts["atelier_output"] == "42" and texts["Comment"] == "水彩"
    assert read_png_text(path, keys=["Comment"]) == {"Comment": "水彩"}
    assert "Comment" not in read_png_text(path)  # by default only the keywords Atelier writes
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
    texts = read_png_text(path, keys=["parameters", "Comment"])
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


# --------------------------------------------------------------------------------------------
# Hostile PNGs: text is counted after inflating, against one budget for the whole file
# --------------------------------------------------------------------------------------------

MiB = 1024 * 1024


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(before_image: bytes = b"", after_image: bytes = b"") -> bytes:
    """A small PNG with extra chunks after IHDR (before IDAT) and before IEND (after IDAT)."""
    buffer = io.BytesIO()
    _image().save(buffer, format="PNG")
    png = buffer.getvalue()
    assert png[12:16] == b"IHDR" and png[-12:] == _chunk(b"IEND", b"")
    return png[:33] + before_image + png[33:-12] + after_image + png[-12:]


@functools.cache
def _deflated_zeros(n: int) -> bytes:
    """n zero bytes, deflated a MiB at a time (100 MB of zeros become about 100 KB)."""
    z = zlib.compressobj(9)
    block = bytes(MiB)
    out = [z.compress(block[: min(MiB, n - done)]) for done in range(0, n, MiB)]
    return b"".join(out) + z.flush()


def _ztxt(key: str, inflated_size: int) -> bytes:
    return _chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + _deflated_zeros(inflated_size))


def _itxt(key: str, inflated_size: int) -> bytes:
    body = key.encode("latin-1") + b"\0\1\0en\0\0" + _deflated_zeros(inflated_size)
    return _chunk(b"iTXt", body)


def _peak(read, data: bytes):
    """What ``read(data)`` returns or raises, and the most memory it allocated, in MiB."""
    tracemalloc.start()
    try:
        try:
            result = read(data)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result = exc
        return result, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def _refused(result, *words: str) -> bool:
    return isinstance(result, PngTextError) and all(w in str(result) for w in words)


A1111_TEXT = (
    "masterpiece, a cat in a garden, (watercolor:1.2)\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: abcd1234, Model: name, Version: v1.9.4"
)


def test_a_normal_a1111_png_still_reads_with_a_long_prompt():
    # A1111 saves through Pillow: one tEXt "parameters" chunk before the image data.
    info = PngImagePlugin.PngInfo()
    long_text = "tag, " * 10_000 + A1111_TEXT  # 50 KB: far beyond any real prompt
    info.add_text("parameters", long_text)
    buffer = io.BytesIO()
    _image().save(buffer, format="PNG", pnginfo=info)

    assert read_png_parameters(buffer.getvalue()) == long_text
    assert parse_infotext(read_png_parameters(buffer.getvalue()))["Seed"] == "1234"
    check_png_text(buffer.getvalue())  # and an upload of it is fine


def test_many_ztxt_chunks_inflating_to_8_mib_each_are_refused_in_bounded_memory():
    # The attacker's 2 MB file: 255 zTXt chunks of 8 KB, each inflating to 8 MiB.
    attack = _png(b"".join(_ztxt(f"k{i}", 8 * MiB) for i in range(255)))
    assert 1.5 * MiB < len(attack) < 3 * MiB
    # Fewer chunks, all named "parameters": each would be kept.
    same_key = _png(b"".join(_ztxt("parameters", 8 * MiB) for _ in range(60)))

    for data in (attack, same_key):
        for read in (read_png_parameters, read_png_text, check_png_text):
            result, peak = _peak(read, data)
            assert _refused(result), (read.__name__, result)
            assert peak < 16, (read.__name__, peak)
    # PNG info skips the unknown keywords and stops at the chunk count; an upload check inflates
    # the first chunk, and stops where the text passes the budget.
    assert _refused(_peak(read_png_parameters, attack)[0], "more than 64 text chunks")
    assert _refused(_peak(check_png_text, attack)[0], "PNG text chunk 'k0' inflates past 1 MiB")
    assert _refused(_peak(read_png_parameters, same_key)[0], "'parameters' inflates past 1 MiB")


def test_a_single_ztxt_bomb_of_100_mb_of_zeros_is_refused_in_bounded_memory():
    bomb = _png(_ztxt("parameters", 100 * MiB))
    assert len(bomb) < 200_000

    for read in (read_png_parameters, check_png_text):
        result, peak = _peak(read, bomb)
        assert _refused(result, "PNG text chunk 'parameters' inflates past 1 MiB"), result
        assert peak < 16, peak


def test_a_compressed_itxt_bomb_is_refused_in_bounded_memory():
    bomb = _png(_itxt("parameters", 100 * MiB))

    for read in (read_png_parameters, check_png_text):
        result, peak = _peak(read, bomb)
        assert _refused(result, "PNG text chunk 'parameters' inflates past 1 MiB"), result
        assert peak < 16, peak


def test_an_oversized_text_chunk_is_refused_without_reading_it():
    big = _png(_chunk(b"tEXt", b"parameters\0" + b"a" * (20 * MiB)))

    for read in (read_png_parameters, check_png_text):
        result, peak = _peak(read, big)
        assert _refused(result, "PNG text chunk 'parameters' is larger than 1 MiB"), result
        assert peak < 4, peak


def test_the_budget_is_for_all_the_text_of_a_file_not_for_each_chunk():
    parts = b"".join(_ztxt(key, 600 * 1024) for key in ("parameters", "Disclosure", "Software"))
    result, _ = _peak(read_png_text, _png(parts))
    assert _refused(result, "PNG text chunk 'Disclosure' inflates past 1 MiB"), result
    # Each chunk alone fits.
    assert len(read_png_parameters(_png(_ztxt("parameters", 600 * 1024)))) == 600 * 1024


def test_keywords_nobody_reads_are_skipped_without_inflating_them():
    text = _chunk(b"tEXt", b"parameters\0" + A1111_TEXT.encode())
    data = _png(text + _ztxt("workflow", 100 * MiB) + _itxt("Comment", 100 * MiB))

    result, peak = _peak(read_png_parameters, data)
    assert result == A1111_TEXT
    assert peak < 1, peak
    assert read_png_text(data) == {"parameters": A1111_TEXT}
    # Pillow would inflate them on opening the file: an upload checks every keyword.
    assert _refused(_peak(check_png_text, data)[0], "'workflow'")


def test_text_chunks_after_the_image_data_are_not_read():
    late = _chunk(b"tEXt", b"parameters\0late\nSteps: 1, Seed: 2, CFG scale: 3")
    assert read_png_parameters(_png(after_image=late)) is None

    early = _chunk(b"tEXt", b"parameters\0" + A1111_TEXT.encode())
    bomb_after = _png(early, after_image=_ztxt("parameters", 100 * MiB))
    result, peak = _peak(read_png_parameters, bomb_after)
    assert result == A1111_TEXT and peak < 1, (result, peak)
    # Pillow reads chunks after the image data when it loads the pixels: an upload checks them.
    assert _refused(_peak(check_png_text, bomb_after)[0], "'parameters'", "1 MiB")


def test_the_number_of_chunks_read_is_bounded():
    tiny = _chunk(b"tEXt", b"Comment\0x")
    result, _ = _peak(read_png_parameters, _png(tiny * 65))
    assert _refused(result, "more than 64 text chunks")
    assert read_png_parameters(_png(tiny * 64)) is None  # 64 are allowed

    private = _chunk(b"prIv", b"x")
    result, _ = _peak(read_png_parameters, _png(private * 2000))
    assert _refused(result, "more than 1024 chunks before its image data")


def test_our_own_pngs_put_every_text_chunk_before_the_image_data(tmp_path):
    path = tmp_path / "own.png"
    write_png(_image(), path, build_infotext("一只猫", "x", BASIC), {"Comment": "c"})
    data = path.read_bytes()
    kinds, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        kinds.append(kind)
        pos += length + 12
    first_image = kinds.index(b"IDAT")
    assert [k for k in kinds[first_image:] if k in (b"tEXt", b"zTXt", b"iTXt")] == []
    assert set(read_png_text(data, keys=None)) == {
        "parameters",
        AI_GENERATED_KEY,
        DISCLOSURE_KEY,
        "Software",
        "XML:com.adobe.xmp",
        "Comment",
    }
    check_png_text(data)
