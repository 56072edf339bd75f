"""Gallery upload of hostile files: refused with what is wrong (400 for a script, the message on the
page for a browser), nothing stored; odd but real images are stored upright and in 8-bit colour."""

from __future__ import annotations

import html
import io
import pickle
import re
import struct
import zlib
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from apps.audit.models import AuditEvent
from apps.outputs.models import Output

MiB = 1024 * 1024


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def small_png() -> bytes:
    return encode(Image.new("RGB", (16, 16), "blue"), "PNG")


def with_chunk_after_ihdr(extra: bytes) -> bytes:
    data = small_png()
    return data[:33] + extra + data[33:]


def gradient16() -> bytes:
    im = Image.new("I;16", (64, 64))
    im.frombytes(struct.pack("<4096H", *(i * 16 for i in range(4096))))
    return encode(im, "PNG")


def sideways_jpeg() -> bytes:
    """40 x 20 stored, red left / blue right, Orientation=6: upright it is 20 x 40, red on top."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif.tobytes(), quality=95)


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (8, 8), (i * 100, 0, 0)) for i in range(3)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)


def noisy_png(side: int = 64) -> bytes:
    return encode(Image.effect_noise((side, side), 60).convert("RGB"), "PNG")


HOSTILE = {
    # Pillow: "Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK"
    "iccp-bomb.png": (
        with_chunk_after_ihdr(chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(100 * MiB), 9))),
        "is a damaged PNG image (a compressed chunk inflates past the limit; a decompression "
        "bomb?); not accepted",
    ),
    "bad-crc.png": (
        small_png()[:29] + b"\0\0\0\0" + small_png()[33:],
        "is a damaged PNG image (bad CRC in chunk IHDR); not accepted",
    ),
    "cut.png": (noisy_png()[:-2000], "is a damaged PNG image (truncated inside chunk IDAT)"),
    "cut.jpg": (
        encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")[:-900],
        "is a damaged JPEG image (truncated); not accepted",
    ),
    "vector.svg": (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        "SVG is not supported (vector image); export it as PNG or JPEG",
    ),
    "IMG_0001.HEIC": (
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64),
        "HEIC is not supported; export it as PNG or JPEG",
    ),
    "model.png": (
        pickle.dumps({"weights": [1, 2]}),
        "not an image (a Python pickle, which can run code when loaded); not accepted, use PNG, "
        "JPEG or WebP",
    ),
    "blob.png": (
        b"\x00\x01\x02\x03\xfe\xff" + bytes(30),
        "not an image (starts with bytes 00 01 02 03 fe ff 00 00); not accepted",
    ),
    "empty.png": (b"", "the file is empty (0 bytes)"),
    "scan.tif": (
        encode(Image.new("RGB", (8, 8)), "TIFF"),
        "TIFF images are not accepted; use PNG, JPEG or WebP",
    ),
    "moving.webp": (animated_webp(), "is animated (3 frames); upload a still image"),
    "moving.png": (
        encode(
            Image.new("RGB", (8, 8)),
            "PNG",
            save_all=True,
            append_images=[Image.new("RGB", (8, 8), "red")],
        ),
        "is animated (2 frames); upload a still image",
    ),
    "float.tif": (
        encode(Image.new("F", (8, 8), 0.5), "TIFF"),
        "TIFF images are not accepted; use PNG, JPEG or WebP",
    ),
    "wide.png": (
        encode(Image.new("1", (5000, 4000)), "PNG"),
        "is 5,000 × 4,000 = 20,000,000 pixels; the limit is 4096 x 4096 = 16,777,216",
    ),
}
# an address, an object repr such as <_io.BytesIO object at …>, a traceback, an exception name
REPR = re.compile(r"0x[0-9a-fA-F]{4,}|<[^<>\s][^<>]*>|Traceback|\w+Error\b|\w+Plugin\b")


def upload_url(project) -> str:
    return reverse("galleries:upload", args=[project.pk])


def post(client, project, name: str, data: bytes, **kwargs):
    return client.post(upload_url(project), {"file": SimpleUploadedFile(name, data)}, **kwargs)


def media_files() -> list[str]:
    media = Path(settings.MEDIA_ROOT)
    return sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []


def state() -> tuple:
    return media_files(), Output.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_gets_400_with_what_is_wrong_and_nothing_is_stored(
    db, client, project, people, name
):
    data, reason = HOSTILE[name]
    client.force_login(people["member"])
    before = state()

    response = post(client, project, name, data, HTTP_ACCEPT="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"{name}: {reason}"), error
    assert not REPR.search(error), error
    assert state() == before


@pytest.mark.parametrize("name", ["iccp-bomb.png", "model.png", "moving.webp"])
def test_a_browser_sees_the_same_reason_on_the_gallery_page(db, client, project, people, name):
    data, reason = HOSTILE[name]
    client.force_login(people["member"])
    before = state()

    response = post(client, project, name, data, follow=True)

    assert response.status_code == 200
    assert f"{name}: {reason}" in html.unescape(response.content.decode())
    assert state() == before


def stored(output: Output) -> Image.Image:
    with Image.open(Path(settings.MEDIA_ROOT, output.file_path)) as im:
        im.load()
        return im


def upload_ok(client, project, people, name: str, data: bytes) -> Output:
    client.force_login(people["member"])
    response = post(client, project, name, data, HTTP_ACCEPT="application/json")
    assert response.status_code == 201, response.content
    return Output.objects.get(pk=response.json()["id"])


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(db, client, project, people):
    output = upload_ok(client, project, people, "depth.png", gradient16())

    im = stored(output)
    assert im.mode == "RGB"
    values = list(im.getchannel("R").tobytes())
    assert values == sorted(values)
    assert (values[0], values[-1]) == (0, 255)
    assert values.count(255) == 16  # clipping made 4,080 of the 4,096 pixels white
    assert len(set(values)) == 256


def test_a_sideways_phone_photo_is_stored_upright(db, client, project, people):
    output = upload_ok(client, project, people, "portrait.jpg", sideways_jpeg())

    assert (output.width, output.height) == (20, 40)
    im = stored(output)
    assert im.size == (20, 40)
    top, bottom = im.getpixel((10, 5)), im.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_a_cmyk_jpeg_is_stored_in_rgb(db, client, project, people):
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)

    im = stored(upload_ok(client, project, people, "print.jpg", data))

    assert im.mode == "RGB"
    r, g, b = im.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_a_palette_png_keeps_its_transparency(db, client, project, people):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 4, 8))

    im = stored(upload_ok(client, project, people, "p.png", encode(palette, "PNG", transparency=0)))

    assert im.mode == "RGBA"
    assert im.getpixel((1, 1))[3] == 0 and im.getpixel((6, 1)) == (255, 0, 0, 255)


@pytest.mark.parametrize(
    "mode,value,expected",
    [("LA", (200, 255), (200, 200, 200, 255)), ("1", 1, (255, 255, 255)), ("L", 7, (7, 7, 7))],
)
def test_grayscale_and_one_bit_images_become_the_same_colours(
    db, client, project, people, mode, value, expected
):
    data = encode(Image.new(mode, (8, 8), value), "PNG")

    im = stored(upload_ok(client, project, people, f"{mode}.png", data))

    assert im.getpixel((3, 3)) == expected


def test_a_camera_jpeg_with_a_preview_picture_uploads_as_a_still(db, client, project, people):
    photo, preview = Image.new("RGB", (40, 20), "red"), Image.new("RGB", (10, 5), "blue")
    data = encode(photo, "MPO", save_all=True, append_images=[preview])

    output = upload_ok(client, project, people, "camera.jpg", data)

    assert (output.width, output.height) == (40, 20)


def _thumb(client, output: Output):
    response = client.get(reverse("galleries:file", args=[output.project_id, output.pk, "thumb"]))
    assert response.status_code == 200
    return response["Content-Type"], b"".join(response.streaming_content)


def test_an_opaque_image_gets_a_small_jpeg_thumbnail_and_a_transparent_one_keeps_png(
    db, client, project, people
):
    # A photograph (scikit-learn ships two), as generated images look: the grid's thumbnail is a
    # JPEG of a fraction of a PNG thumbnail's bytes; alpha would be lost in a JPEG, so it stays PNG.
    from sklearn.datasets import load_sample_image

    opaque = Image.fromarray(load_sample_image("china.jpg")).crop((0, 0, 427, 427))
    opaque = opaque.resize((512, 512), Image.Resampling.LANCZOS)
    clear = opaque.copy()
    clear.putalpha(Image.new("L", (512, 512), 128))

    photo = upload_ok(client, project, people, "photo.png", encode(opaque, "PNG"))
    glass = upload_ok(client, project, people, "glass.png", encode(clear, "PNG"))
    photo_type, photo_thumb = _thumb(client, photo)
    glass_type, glass_thumb = _thumb(client, glass)

    assert photo.thumb_path.endswith(".thumb.jpg") and photo_type == "image/jpeg"
    with Image.open(io.BytesIO(photo_thumb)) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (256, 256), "RGB")
    as_png = opaque.copy()
    as_png.thumbnail((256, 256))
    assert len(photo_thumb) * 4 < len(encode(as_png, "PNG", compress_level=4))  # 19 vs 121 KB
    assert glass.thumb_path.endswith(".thumb.png") and glass_type == "image/png"
    with Image.open(io.BytesIO(glass_thumb)) as im:
        assert (im.format, im.size, im.mode) == ("PNG", (256, 256), "RGBA")
