"""Hostile image zips: every file that is not a plain still image is refused by name with what is
wrong, or converted correctly (16-bit, EXIF orientation, CMYK, palettes); nothing is left behind."""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.data.import_samples import jpeg, listing, png, write_zip
from workers.data import DatasetInvalid, ImportLimits, import_file, iter_rows
from workers.data.images import MAX_ZIP_ENTRIES

MB = 1024 * 1024


# ---------------------------------------------------------------- builders


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient16(width: int = 64, height: int = 64) -> bytes:
    """A 16-bit grayscale PNG whose pixels run 0, 16, 32, … 65,520 in reading order."""
    im = Image.new("I;16", (width, height))
    im.frombytes(struct.pack(f"<{width * height}H", *(i * 16 for i in range(width * height))))
    return encode(im, "PNG")


def sideways_jpeg() -> bytes:
    """A 40 x 20 JPEG, red on the left and blue on the right, tagged Orientation=6 (turn it 90°
    clockwise to see it): upright it is 20 x 40, red on top."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif.tobytes(), quality=95)


def animated(fmt: str, frames: int = 3) -> bytes:
    images = [Image.new("RGB", (8, 8), (i * 80, 0, 0)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def transparent_palette_png() -> bytes:
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 4, 8))
    return encode(im, "PNG", transparency=0)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_one_bit_png(side: int = 20_000) -> bytes:
    """A real side x side black 1-bit PNG: a few tens of KB that decode to side² pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def noisy_png(side: int = 64) -> bytes:
    return encode(Image.effect_noise((side, side), 60).convert("RGB"), "PNG")


def bad_ihdr_crc() -> bytes:
    data = bytearray(png())
    data[29:33] = b"\0\0\0\0"  # the IHDR CRC
    return bytes(data)


def iccp_bomb() -> bytes:
    """A PNG whose colour profile inflates to 100 MiB: Pillow raises 'Decompressed data too large'."""
    data = png()
    profile = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(100 * MB), 9))
    return data[:33] + profile + data[33:]


def eocd_only(entries: int) -> bytes:
    """Just a zip end record that claims `entries` entries: nothing else in the file."""
    return b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, entries, entries, 0, 0, 0)


def zip_of(*entries: tuple[str, bytes | str]) -> Callable[[Path], Path]:
    return lambda tmp: write_zip(tmp / "set.zip", list(entries))


def with_caption(name: str, data: bytes | str) -> Callable[[Path], Path]:
    """A good image and caption, then `name` with its own caption."""
    stem = name.rsplit(".", 1)[0]
    return zip_of(("ok.png", png()), ("ok.txt", "fine"), (name, data), (stem + ".txt", "x"))


# ---------------------------------------------------------------- the catalogue


@dataclass
class Bad:
    id: str
    build: Callable[[Path], Path]
    message: str  # the first error: exact, or a regex matched at the start when it starts "re:"
    code: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def _written(tmp: Path, name: str, data: bytes) -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


CASES = [
    # --- files that are not images, under an image name -----------------------------------
    Bad(
        "pickle-named-png",
        with_caption("cat.png", pickle.dumps({"a": 1})),
        "cat.png: not an image (a Python pickle, which can run code when loaded)",
        "not_image",
    ),
    Bad(
        "svg-named-png",
        with_caption("logo.png", '<svg xmlns="http://www.w3.org/2000/svg"/>'),
        "logo.png: SVG is not supported (vector image); export it as PNG or JPEG",
        "not_image",
    ),
    Bad(
        "heic-named-jpg",
        with_caption("phone.jpg", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64)),
        "re:phone\\.jpg: HEIC is not supported; export it as PNG or JPEG",
        "not_image",
    ),
    Bad(
        "avif-named-png",
        with_caption("a.png", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1" + bytes(64)),
        "a.png: AVIF is not supported; export it as PNG or JPEG",
        "not_image",
    ),
    Bad(
        "html-named-jpg",
        with_caption("dl.jpg", "<!DOCTYPE html><html><body>Sign in</body></html>"),
        "dl.jpg: not an image (an HTML page: was it saved from a login or error page?)",
        "not_image",
    ),
    Bad(
        "binary-named-png",
        with_caption("b.png", bytes(range(250, 256)) + bytes(20)),
        "b.png: not an image (starts with bytes fa fb fc fd fe ff 00 00)",
        "not_image",
    ),
    Bad(
        "empty-image",
        with_caption("e.png", b""),
        "e.png: is empty (0 bytes)",
        "not_image",
    ),
    Bad(
        "icon-named-png",
        with_caption("i.png", encode(Image.new("RGB", (16, 16)), "ICO")),
        "i.png: ICO images are not supported (use PNG, JPEG, WEBP, GIF, BMP)",
        "not_image",
    ),
    # --- damaged images ---------------------------------------------------------------------
    Bad(
        "png-bad-ihdr-crc",
        with_caption("c.png", bad_ihdr_crc()),
        "c.png: is a damaged PNG image (bad CRC in chunk IHDR)",
        "not_image",
    ),
    Bad(
        "png-truncated",
        with_caption("t.png", noisy_png()[:-2000]),
        "t.png: is a damaged PNG image (truncated inside chunk IDAT)",
        "not_image",
    ),
    Bad(
        "png-cut-before-iend",
        with_caption("t.png", png()[:-12]),
        "t.png: is a damaged PNG image (truncated: no IEND chunk)",
        "not_image",
    ),
    Bad(
        "jpeg-truncated",
        with_caption(
            "t.jpg", encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")[:-900]
        ),
        "t.jpg: is a damaged JPEG image (truncated)",
        "not_image",
    ),
    Bad(
        "png-iccp-bomb",
        with_caption("p.png", iccp_bomb()),
        "p.png: is a damaged PNG image (a compressed chunk inflates past the limit; a "
        "decompression bomb?)",
        "not_image",
    ),
    Bad(
        "real-20000-square-png",
        with_caption("big.png", huge_one_bit_png()),
        "big.png: has 400,000,000 pixels; the limit is 89,478,485 (a decompression bomb?)",
        "not_image",
    ),
    Bad(
        "real-10000-square-png",
        with_caption("big.png", huge_one_bit_png(10_000)),
        "big.png: is 10,000 × 10,000 = 100,000,000 pixels; the limit is 89,478,485 "
        "(a decompression bomb?)",
        "not_image",
    ),
    # --- animations ---------------------------------------------------------------------------
    Bad(
        "animated-gif",
        with_caption("a.gif", animated("GIF")),
        "a.gif: is animated (3 frames); upload a still image",
        "not_image",
    ),
    Bad(
        "animated-webp",
        with_caption("a.webp", animated("WEBP", 4)),
        "a.webp: is animated (4 frames); upload a still image",
        "not_image",
    ),
    Bad(
        "animated-png",
        with_caption("a.png", animated("PNG", 2)),
        "a.png: is animated (2 frames); upload a still image",
        "not_image",
    ),
    # --- entries that are neither images nor captions --------------------------------------
    Bad(
        "stray-pickle",
        zip_of(("a.png", png()), ("a.txt", "x"), ("model.pkl", pickle.dumps([1]))),
        "model.pkl: is a pickle or model file, not an image or a caption (such files can run "
        "code when loaded); take it out of the archive",
        "not_image_or_caption",
    ),
    Bad(
        "stray-script",
        zip_of(("a.png", png()), ("a.txt", "x"), ("run.sh", "rm -rf /")),
        "run.sh: is not an image (PNG, JPEG, WEBP, GIF, BMP) or a .txt caption; an image set "
        "holds only those: take it out of the archive",
        "not_image_or_caption",
    ),
    Bad(
        "stray-heic-photo",
        zip_of(("a.png", png()), ("a.txt", "x"), ("IMG_0001.HEIC", b"\0\0\0\x18ftypheic")),
        "re:IMG_0001\\.HEIC: HEIC is not supported; export it as PNG or JPEG",
        "not_image_or_caption",
    ),
    Bad(
        "stray-svg",
        zip_of(("a.png", png()), ("a.txt", "x"), ("logo.svg", "<svg/>")),
        "logo.svg: SVG is not supported (vector image); export it as PNG or JPEG",
        "not_image_or_caption",
    ),
    Bad(
        "metadata-csv",
        zip_of(("a.png", png()), ("a.txt", "x"), ("metadata.csv", "file_name,text\n")),
        "metadata.csv: is not read: captions come from .txt files beside the images or a "
        "metadata.jsonl",
        "not_image_or_caption",
    ),
    Bad(
        "orphan-captions-all-named",
        zip_of(
            ("a.png", png()),
            ("a.txt", "x"),
            *[(f"lost/{i:02}.txt", "caption") for i in range(25)],
        ),
        "25 caption file(s) have no image beside them: "
        + ", ".join(f"lost/{i:02}.txt" for i in range(20))
        + " and 5 more",
        "orphan_caption",
    ),
    # --- zip limits -------------------------------------------------------------------------
    Bad(
        "zip-bomb-says-uncompressed-size",
        zip_of(("a.png", png()), ("a.txt", "x"), ("b.png", bytes(4 * MB)), ("b.txt", "x")),
        r"re:b\.png: compression ratio [\d,]+:1; the limit is 100:1 \(a zip bomb\?\): "
        r"uncompressed size 4 MB \(declared\) from [\d.]+ KB$",
        "zip_bomb",
    ),
    Bad(
        "archive-uncompressed-size",
        zip_of(("a.png", png()), ("a.txt", "x" * 5000)),
        r"re:the archive would unpack to [\d.]+ KB \(its declared uncompressed size\); "
        "the limit is 1,000 bytes$",
        "too_big_uncompressed",
        kwargs={"limits": ImportLimits(max_uncompressed_bytes=1000)},
    ),
    Bad(
        "member-uncompressed-size",
        zip_of(("a.png", png()), ("a.txt", "x"), ("b.png", noisy_png(200)), ("b.txt", "x")),
        r"re:b\.png: uncompressed size [\d.]+ KB \(declared\); the limit per file is 1,000 bytes$",
        "member_too_big",
        kwargs={"limits": ImportLimits(max_member_bytes=1000)},
    ),
    Bad(
        "entry-count-from-the-end-record",
        lambda tmp: _written(tmp, "many.zip", eocd_only(65_535)),
        f"the archive has 65,535 entries; the limit is {MAX_ZIP_ENTRIES:,}",
        "too_many_members",
    ),
]


def message_matches(expected: str, actual: str) -> bool:
    if expected.startswith("re:"):
        return re.match(expected[3:], actual) is not None
    return expected == actual


def test_the_catalogue_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def refuse(case: Bad, tmp_path: Path) -> DatasetInvalid:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    path = case.build(src)
    out = tmp_path / "out"
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=out, **case.kwargs)
    assert listing(out) == [] if out.exists() else True, f"{case.id} left {listing(out)}"
    return caught.value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_image_zip_is_refused_with_what_is_wrong_and_leaves_nothing(
    case: Bad, tmp_path: Path
):
    invalid = refuse(case, tmp_path)
    first = invalid.errors[0]
    assert message_matches(case.message, first.message), f"{case.id}: {invalid.messages}"
    assert first.code == case.code, f"{case.id}: {first!r}"


# an address, an object repr such as <_io.BytesIO object at …>, a traceback, an exception name
REPR = re.compile(r"0x[0-9a-fA-F]{4,}|<[^<>\s][^<>]*>|Traceback|\w+Error\b|\w+Plugin\b")


def test_no_refusal_in_the_catalogue_shows_a_python_repr_or_an_address(tmp_path: Path):
    assert REPR.search("cannot identify image file <_io.BytesIO object at 0x7f6114110450>")
    seen = []
    for case in CASES:
        invalid = refuse(case, tmp_path / case.id)
        for message in invalid.messages:
            seen.append(message)
            assert not REPR.search(message), f"{case.id}: {message}"
    assert len(seen) >= len(CASES)


def test_the_entry_limit_applies_at_20000_entries(tmp_path: Path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.png", png())
        zf.writestr("a.txt", "x")
        for i in range(MAX_ZIP_ENTRIES - 1):
            zf.writestr(f"d{i}/", b"")
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert caught.value.messages == [
        f"the archive has {MAX_ZIP_ENTRIES + 1:,} entries; the limit is {MAX_ZIP_ENTRIES:,}"
    ]


def test_every_stray_entry_is_named(tmp_path: Path):
    path = write_zip(
        tmp_path / "s.zip",
        [
            ("a.png", png()),
            ("a.txt", "x"),
            ("weights.pt", b"\x80\x02"),
            ("notes.docx", b"PK"),
            ("clip.mp4", b"\0\0\0\x18ftypisom"),
        ],
    )
    with pytest.raises(DatasetInvalid) as caught:
        import_file(path, path.name, out_dir=tmp_path / "out")
    assert [e.path for e in caught.value.errors] == ["clip.mp4", "notes.docx", "weights.pt"]


# ---------------------------------------------------------------- accepted, and decoded right


def import_one(tmp_path: Path, name: str, data: bytes, *extra: tuple[str, bytes | str]):
    stem = name.rsplit(".", 1)[0]
    path = write_zip(tmp_path / "set.zip", [(name, data), (stem + ".txt", "a caption"), *extra])
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    (row,) = list(iter_rows(result.canonical_path))
    return result, Path(result.images_dir) / row["image"]


def test_operating_system_junk_and_a_readme_are_skipped(tmp_path: Path):
    result, _ = import_one(
        tmp_path,
        "a.png",
        png(),
        ("__MACOSX/._a.png", b"\0\5junk"),
        (".DS_Store", b"\0\0\0\1Bud1"),
        ("imgs/Thumbs.db", b"\xd0\xcf\x11\xe0"),
        ("desktop.ini", "[.ShellClassInfo]"),
        ("README.md", "# my set"),
    )
    assert result.rows == 1
    assert result.warnings == ["skipped 1 documentation file(s): README.md"]


def test_a_16_bit_grayscale_png_is_scaled_to_8_bit_not_clipped(tmp_path: Path):
    _, stored = import_one(tmp_path, "g.png", gradient16())
    with Image.open(stored) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (64, 64))
        pixels = list(im.tobytes())
    assert pixels == sorted(pixels)  # order kept
    assert (pixels[0], pixels[-1]) == (0, 255)  # full range
    assert pixels.count(255) == 16  # 65,280-65,520 >> 8; clipping made 4,080 of them white
    assert len(set(pixels)) == 256


def test_a_sideways_jpeg_is_stored_upright(tmp_path: Path):
    _, stored = import_one(tmp_path, "portrait.jpg", sideways_jpeg())
    with Image.open(stored) as im:
        assert im.format == "JPEG"
        assert im.size == (20, 40)
        assert im.getexif().get(0x0112) is None  # turned once, for every reader
        top, bottom = im.getpixel((10, 5)), im.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_cmyk_jpeg_is_stored_as_rgb(tmp_path: Path):
    _, stored = import_one(tmp_path, "print.jpg", cmyk_jpeg())
    with Image.open(stored) as im:
        assert im.mode == "RGB"
        r, g, b = im.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    "name,data,mode",
    [
        ("p.png", transparent_palette_png(), "P"),
        ("la.png", encode(Image.new("LA", (8, 8), (128, 100)), "PNG"), "LA"),
        ("bw.png", encode(Image.new("1", (8, 8), 1), "PNG"), "1"),
        ("b.bmp", encode(Image.new("RGB", (8, 8), (1, 2, 3)), "BMP"), "RGB"),
        ("still.gif", encode(Image.new("P", (8, 8), 3), "GIF"), "P"),
        ("photo.jpg", jpeg(), "RGB"),
    ],
    ids=["palette-transparency", "la", "1-bit", "bmp", "still-gif", "jpeg"],
)
def test_a_plain_still_image_is_stored_byte_for_byte(tmp_path: Path, name, data, mode):
    _, stored = import_one(tmp_path, name, data)
    assert stored.read_bytes() == data
    with Image.open(stored) as im:
        assert im.mode == mode


def test_a_caption_named_after_the_whole_image_name_pairs(tmp_path: Path):
    path = write_zip(tmp_path / "k.zip", [("cat.png", png()), ("cat.png.txt", "a cat")])
    result = import_file(path, path.name, out_dir=tmp_path / "out")
    assert [r["caption"] for r in iter_rows(result.canonical_path)] == ["a cat"]


# ---------------------------------------------------------------- to_8bit, mode by mode


def ramp(mode: str, values: list[float]) -> Image.Image:
    im = Image.new(mode, (len(values), 1))
    for x, v in enumerate(values):
        im.putpixel((x, 0), v)
    return im


@pytest.mark.parametrize(
    "mode,values,expected",
    [
        ("I;16B", [0, 256, 32768, 65535], [0, 1, 128, 255]),
        ("I;16", [0, 255, 65280, 65535], [0, 0, 255, 255]),
        ("I", [0, 4096, 65535], [0, 16, 255]),
        ("I", [-1000, 0, 1000], [0, 127, 255]),  # not 16-bit data: stretched over its range
        ("F", [0.0, 0.5, 1.0], [0, 127, 255]),
        ("F", [-2.0, 0.0, 2.0], [0, 127, 255]),
    ],
)
def test_deep_grayscale_is_scaled_into_8_bits_keeping_order(mode, values, expected):
    from workers.data.images import to_8bit

    out = to_8bit(ramp(mode, values))
    assert out.mode == "L"
    assert list(out.tobytes()) == expected


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
        ("PA", (0, 0), None),
        ("RGBa", (0, 0, 0, 0), (0, 0, 0, 0)),
        ("La", (0, 0), (0, 0, 0, 0)),
        ("1", 1, 255),
    ],
)
def test_colour_modes_become_l_rgb_or_rgba(mode, value, expected):
    from workers.data.images import to_8bit

    out = to_8bit(Image.new(mode, (2, 2), value))
    assert out.mode in ("L", "RGB", "RGBA")
    if expected is not None:
        assert out.getpixel((0, 0)) == expected


def test_lab_is_refused_rather_than_shown_in_wrong_colours():
    from workers.data.images import ImageRefused, to_8bit

    with pytest.raises(ImageRefused, match="LAB colour mode"):
        to_8bit(Image.new("LAB", (2, 2)))


def test_a_camera_jpeg_with_a_preview_picture_is_a_still_jpeg(tmp_path: Path):
    photo, preview = Image.new("RGB", (40, 20), "red"), Image.new("RGB", (10, 5), "blue")
    data = encode(photo, "MPO", save_all=True, append_images=[preview])
    _, stored = import_one(tmp_path, "camera.jpg", data)
    assert stored.suffix == ".jpg"
    with Image.open(stored) as im:
        assert im.size == (40, 20)
