"""Image sets uploaded as a zip: safe listing, bounded reads, real-image checks, content addressing.

Two layouts are read: `name.txt` beside `name.png` (records sorted by image path, so the same set
zipped in another order gives the same version), or a `metadata.jsonl` whose lines carry
`file_name` (relative to the folder of metadata.jsonl) and `text`/`caption` (records in line order).
Nothing is ever extracted by its archive name: accepted images are written as `<sha256>.<ext>`.

A zip of training images holds images and captions and nothing else: any other entry (a pickle, a
script, a PDF, an HEIC photo, a caption with no image beside it) refuses the import, named, because
a stray file in a training set is a mistake the user wants to hear about, not a warning on a page.
Only the junk that operating systems add on their own is skipped (`__MACOSX/`, `._*`, `.DS_Store`,
`Thumbs.db`, `desktop.ini`), and a README or LICENSE (noted in the warnings). Animated images are
refused rather than cut to their first frame: a trainer would see one frame the user never chose.

Every image is decoded once (:func:`open_still_image`, shared with the gallery upload): the
pixel count is checked from the header before any pixel is allocated, every Pillow decoding error
becomes a reason a user can act on (never a Python repr), the EXIF orientation is applied, and
16-bit, float, CMYK and other modes are converted to 8 bit by scaling, not clipping. An image that
is already upright 8-bit is stored byte for byte (a PNG cut after its IEND chunk, so a PNG that
is also a zip keeps only the image); one that needed turning or converting is stored re-encoded
(JPEG at quality 95 for JPEG photos, PNG otherwise). Stored files are named `<sha256>.<ext>` by
their real format and never run: a JPEG with a script in a comment stays an inert JPEG.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from workers.data.errors import DatasetError
from workers.data.limits import (
    STRICT_JSON,
    ImportLimits,
    exceeds_depth,
    explain_json,
    find_problem,
    human_bytes,
    json_type_name,
    may_hold_surrogate,
    show,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "ALLOWED_IMAGE_FORMATS",
    "IMAGE_EXTENSIONS",
    "MAX_ZIP_ENTRIES",
    "ImageRefused",
    "ZipSource",
    "check_image",
    "is_zip",
    "open_still_image",
    "to_8bit",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".gif", ".bmp"})
ALLOWED_IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
MAX_ZIP_ENTRIES = 20_000
"""Entries in an image zip, folders included: a training set is 5-50 images, a large captioned set
a few thousand image/caption pairs. Lower than ImportLimits.max_zip_members, which also bounds
other archives; the smaller of the two applies, checked from the end record before any entry is
listed."""
NAMES_SHOWN = 20  # entries named in one message before "and N more"
ARCHIVE_EXTENSIONS = (
    ".zip",
    ".tar",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".7z",
    ".rar",
    ".zst",
    ".lz4",
    ".jar",
    ".whl",
    ".cab",
    ".iso",
)
ARCHIVE_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd",
)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
METADATA_NAME = "metadata.jsonl"
CAPTION_KEYS = ("text", "caption")
RATIO_MIN_BYTES = 1024 * 1024  # below this a high ratio cannot hurt; small text files compress well
_JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_DOCS = re.compile(r"(^|/)(README|LICEN[CS]E|COPYING)(\.(md|txt|rst))?$", re.IGNORECASE)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_IMAGE_NAMES = ", ".join(ALLOWED_IMAGE_FORMATS)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXPORT = "export it as PNG or JPEG"
# Formats people save from phones, design tools and cameras, by extension and by magic bytes.
_UNSUPPORTED_EXTENSIONS = {
    ".svg": f"SVG is not supported (vector image); {_EXPORT}",
    ".svgz": f"SVG is not supported (vector image); {_EXPORT}",
    ".heic": f"HEIC is not supported; {_EXPORT} (iPhone: Settings > Camera > Formats > Most Compatible)",
    ".heif": f"HEIF is not supported; {_EXPORT}",
    ".avif": f"AVIF is not supported; {_EXPORT}",
    ".jxl": f"JPEG XL is not supported; {_EXPORT}",
    ".psd": f"Photoshop PSD is not supported; {_EXPORT}",
    ".tif": f"TIFF images are not supported (use {_IMAGE_NAMES})",
    ".tiff": f"TIFF images are not supported (use {_IMAGE_NAMES})",
    ".pdf": f"a PDF is not an image; {_EXPORT}",
}
_CODE_EXTENSIONS = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".npy", ".npz", ".joblib")
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_PICKLE = re.compile(rb"\A\x80[\x02-\x05]")


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


class Rec(NamedTuple):
    row: int | None
    line: int | None
    path: str | None
    data: dict[str, Any]


class ImageRefused(ValueError):
    """An image refused for a reason a user can act on; `str()` is that reason, as shown."""


def _pixel_limit(width: int, height: int, max_pixels: int) -> str:
    return (
        f"is {width:,} × {height:,} = {width * height:,} pixels; the limit is "
        f"{max_pixels:,} (a decompression bomb?)"
    )


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def describe_non_image(data: bytes) -> str:
    """What a file that no allowed image reader recognises is, from its first bytes."""
    head = data[:1024]
    if not data:
        return "is empty (0 bytes)"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in lowered[:1024] and lowered.startswith((b"<svg", b"<?xml", b"<!doctype svg")):
        return _UNSUPPORTED_EXTENSIONS[".svg"]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return _UNSUPPORTED_EXTENSIONS[".avif"]
        if brand in _HEIF_BRANDS:
            return _UNSUPPORTED_EXTENSIONS[".heic"]
        return "a video or MP4-family file, not an image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return _UNSUPPORTED_EXTENSIONS[".tif"]
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return _UNSUPPORTED_EXTENSIONS[".jxl"]
    if head.startswith(b"8BPS"):
        return _UNSUPPORTED_EXTENSIONS[".psd"]
    if head.startswith(b"%PDF"):
        return _UNSUPPORTED_EXTENSIONS[".pdf"]
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "not an image (an HTML page: was it saved from a login or error page?)"
    if _PICKLE.match(head):
        return "not an image (a Python pickle, which can run code when loaded)"
    try:  # a character cut at byte 40 is left out, not taken for binary
        text = codecs.getincrementaldecoder("utf-8")().decode(head[:40], final=False)
    except UnicodeDecodeError:
        text = ""
    if text and _printable(text):
        shown = " ".join(text.split())[:32]
        return f'not an image (it is text: "{shown}")'
    return f"not an image (starts with bytes {head[:8].hex(' ')})"


def _png_damage(data: bytes) -> str | None:
    """Where a PNG's chunk structure breaks: 'truncated …' or 'bad CRC in chunk …'; None if intact."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        name = kind.decode("latin-1") if kind.isalpha() else kind.hex()
        end = pos + 8 + length + 4
        if end > len(data):
            return f"truncated inside chunk {name}"
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) & 0xFFFFFFFF != crc:
            return f"bad CRC in chunk {name}"
        if kind == b"IEND":
            return None
        pos = end
    return "truncated: no IEND chunk"


def _png_end(data: bytes) -> int:
    """Where an intact PNG's IEND chunk ends. Bytes after it are no part of the image: a PNG that
    is also a zip (a polyglot) or carries a payload there is stored without them."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        pos += 8 + length + 4
        if kind == b"IEND":
            return pos
    return len(data)


def _safe_detail(exc: BaseException) -> str:
    """Pillow's own words when they name the problem, without reprs or addresses."""
    text = str(exc).strip()
    lowered = text.lower()
    if "decompressed data too large" in lowered or "too much memory used in text" in lowered:
        return "a compressed chunk inflates past the limit; a decompression bomb?"
    if not text or "<" in text or "0x" in text or "Plugin" in text or len(text) > 120:
        return ""
    return text


def _damaged(data: bytes, fmt: str, exc: BaseException | None) -> str:
    if data.startswith(_PNG_SIGNATURE):
        fmt = "PNG"
        where = _png_damage(data)
        if where is not None:
            return f"is a damaged PNG image ({where})"
    detail = _safe_detail(exc) if exc is not None else ""
    if "truncated" in detail.lower() or isinstance(exc, EOFError | struct.error):
        return f"is a damaged {fmt} image (truncated)"
    return f"is a damaged {fmt} image ({detail})" if detail else f"is a damaged {fmt} image"


def _unrecognised(data: bytes, formats: Collection[str]) -> str:
    """Why no allowed reader took the file: another image format Pillow knows, or what it is."""
    from PIL import Image

    if data.startswith(_PNG_SIGNATURE):
        return _damaged(data, "PNG", None)
    described = describe_non_image(data)
    if not described.startswith("not an image ("):
        return described
    magic = _guess_format(data)
    if magic != "image" and magic not in formats:
        # A GIF or BMP in an upload that takes neither: its format is the answer, whatever its
        # header holds (one declaring 65,535 × 65,535 pixels stops Pillow before it names it).
        return f"{magic} images are not supported (use {', '.join(formats)})"
    try:  # only the header is parsed: a format name for the message, nothing decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as other:
                fmt = other.format
    except Exception:  # noqa: BLE001 - any parser error means "not an image we know"
        fmt = None
    if fmt and fmt not in formats:
        return f"{fmt} images are not supported (use {', '.join(formats)})"
    if data[:3] == b"\xff\xd8\xff":
        return "is a damaged JPEG image"
    return described


def _orientation(im: PILImage) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: the pixels stay as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def open_still_image(data: bytes, *, formats: Collection[str], max_pixels: int) -> PILImage:
    """The image decoded and turned upright by its EXIF orientation, in its own mode; refused with
    ImageRefused when it is not one of `formats`, over `max_pixels` (checked from the header,
    before any pixel is allocated), animated, or damaged.

    Pillow raises a zoo of exceptions on hostile files (OSError, ValueError, SyntaxError, EOFError,
    struct.error, zlib.error, IndexError, DecompressionBombError, …): every one is a refusal, and
    the message says what is wrong without repeating Pillow's reprs.
    """
    return _decode(data, formats, max_pixels)[0]


def _decode(data: bytes, formats: Collection[str], max_pixels: int) -> tuple[PILImage, bool]:
    """(image, whether the EXIF orientation turned it): see open_still_image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
        try:
            im: PILImage = Image.open(io.BytesIO(data), formats=list(formats))
        except Image.DecompressionBombError as exc:
            m = _BOMB_PIXELS.search(str(exc))
            pixels = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
            raise ImageRefused(
                f"has {pixels}; the limit is {max_pixels:,} (a decompression bomb?)"
            ) from None
        except UnidentifiedImageError:
            raise ImageRefused(_unrecognised(data, formats)) from None
        except Exception as exc:  # noqa: BLE001 - a parser error on a broken header
            raise ImageRefused(_damaged(data, _guess_format(data), exc)) from None
        fmt = im.format or "?"
        # A camera JPEG with more pictures after the photo (previews, depth maps): a still JPEG.
        still = fmt == "MPO"
        if still:
            fmt = "JPEG"
        try:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageRefused(_pixel_limit(width, height, max_pixels))
            if width == 0 or height == 0:
                raise ImageRefused(f"is a {fmt} image with no pixels")
            frames = 1 if still else getattr(im, "n_frames", 1)
            if frames > 1:
                raise ImageRefused(f"is animated ({frames:,} frames); upload a still image")
            im.seek(0)
            im.load()
            # Pillow checks no CRC past the header: a PNG damaged in its image data or cut after
            # it would still load, as garbage or as half an image.
            if fmt == "PNG" and (where := _png_damage(data)) is not None:
                raise ImageRefused(f"is a damaged PNG image ({where})")
            turned = _orientation(im) != 1
            if turned:
                im = ImageOps.exif_transpose(im)
        except ImageRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            raise ImageRefused(_damaged(data, fmt, exc)) from None
    im.format = fmt  # exif_transpose returns a copy without it
    return im, turned


def _guess_format(data: bytes) -> str:
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"GIF8",):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    return "image"


_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


def _scale_to_l(im: PILImage) -> PILImage:
    """A 16/32-bit integer or float grayscale image as 8-bit L, by scaling its range, never
    clipping: 16-bit values keep their top byte (v >> 8); floats in [0, 1] are multiplied by 255;
    anything else is stretched from its own minimum and maximum."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    extrema = im.getextrema()  # one band: (min, max) numbers
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if im.mode == "I" and 0 <= low and high <= 65535:
        scale, offset = 1 / 256, 0.0
    elif im.mode == "F" and 0 <= low and high <= 1:
        scale, offset = 255.0, 0.0
    elif high > low:
        scale = 255 / (high - low)
        offset = -low * scale
    else:
        scale, offset = 0.0, 0.0
    return im.point(lambda v: v * scale + offset).convert("L")


def to_8bit(im: PILImage) -> PILImage:
    """The image as 8-bit L, RGB or RGBA with its colours and transparency kept: 1-bit to L,
    16-bit and float grayscale scaled (not clipped), palettes with transparency and premultiplied
    alpha to RGBA, CMYK/YCbCr/LAB/HSV to RGB. ImageRefused for a mode Pillow cannot convert."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _scale_to_l(im)
    if mode == "P":
        transparent = "transparency" in im.info or (
            im.palette is not None and "A" in im.palette.mode
        )
        return im.convert("RGBA" if transparent else "RGB")
    if mode == "LAB":  # Pillow's LAB to RGB copies the channels unconverted: wrong colours
        raise ImageRefused("uses the LAB colour mode, which is not supported; export it as sRGB")
    try:
        if mode == "La":
            im = im.convert("LA")
        return im.convert("RGBA" if mode in _ALPHA_MODES else "RGB")
    except Exception:  # noqa: BLE001 - Pillow has no conversion for this mode
        raise ImageRefused(
            f"uses the {mode} colour mode, which cannot be converted to RGB"
        ) from None


_PLAIN_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}


def check_image(data: bytes, max_pixels: int) -> tuple[str, bytes]:
    """(extension, bytes to store) for a real PNG/JPEG/WEBP/GIF/BMP still image; ImageRefused
    (a ValueError) with the reason otherwise.

    The bytes are the file itself when it is already upright and in a mode every reader converts
    correctly; otherwise the decoded image re-encoded (JPEG quality 95 for JPEG photos, PNG for
    the rest, which keeps 8-bit detail and transparency).
    """
    im, turned = _decode(data, ALLOWED_IMAGE_FORMATS, max_pixels)
    fmt = im.format or "PNG"
    if im.mode in _PLAIN_MODES and not turned:
        if fmt == "PNG":
            data = data[: _png_end(data)]
        return ALLOWED_IMAGE_FORMATS[fmt], data
    out = im if im.mode in _PLAIN_MODES - {"PA"} else to_8bit(im)
    buffer = io.BytesIO()
    if fmt == "JPEG" and out.mode in ("L", "RGB"):
        out.save(buffer, format="JPEG", quality=95, subsampling=0)
        return "jpg", buffer.getvalue()
    out.save(buffer, format="PNG")
    return "png", buffer.getvalue()


def _names(names: list[str]) -> str:
    """`a, b, c` for up to NAMES_SHOWN names, then `and N more`."""
    shown = ", ".join(names[:NAMES_SHOWN])
    rest = len(names) - NAMES_SHOWN
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _stray_reason(name: str) -> str:
    """Why an entry that is neither an image nor a caption refuses the import."""
    ext = posixpath.splitext(name)[1].lower()
    if ext in _UNSUPPORTED_EXTENSIONS:
        return _UNSUPPORTED_EXTENSIONS[ext]
    if ext in _CODE_EXTENSIONS:
        return (
            "is a pickle or model file, not an image or a caption (such files can run code when "
            "loaded); take it out of the archive"
        )
    if posixpath.basename(name).lower() in ("metadata.csv", "metadata.json"):
        return f"is not read: captions come from .txt files beside the images or a {METADATA_NAME}"
    return (
        f"is not an image ({_IMAGE_NAMES}) or a .txt caption; an image set holds only those: "
        "take it out of the archive"
    )


def _declared_entries(path: str, stop_after: int) -> tuple[int, bool]:
    """The entry count of a zip, read before the central directory is parsed, so that a
    million-entry archive is refused without a million ZipInfo objects: the larger of the end
    record's count (zip64 included) and the entries found walking the central directory's headers
    (at most `stop_after` + 1 of them: the end record's count may lie, zipfile does not trust it
    either), and whether that number is exact (a walk stopped at `stop_after` + 1 is a floor).
    (0, True) when the record is not found (zipfile then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            tail_start = max(0, size - (22 + 65535 + 20))
            f.seek(tail_start)
            tail = f.read()
            at = tail.rfind(b"PK\x05\x06")
            if at < 0 or at + 22 > len(tail):
                return 0, True
            count, cd_size, cd_offset = struct.unpack("<HII", tail[at + 10 : at + 20])
            locator = at - 20
            if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
                offset = struct.unpack("<Q", tail[locator + 8 : locator + 16])[0]
                f.seek(offset)
                record = f.read(56)
                if record[:4] == b"PK\x06\x06" and len(record) == 56:
                    count, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
            if count > stop_after:
                return int(count), True
            walked = _walk_central_directory(f, cd_offset, min(cd_size, size), stop_after)
            return (walked, False) if walked > stop_after else (int(count), True)
    except OSError:
        return 0, True


def _walk_central_directory(f: Any, offset: int, size: int, stop_after: int) -> int:
    """Central directory headers found from `offset` within `size` bytes, counting no further
    than `stop_after` + 1 (46 bytes each plus their name, extra field and comment)."""
    f.seek(offset)
    found = consumed = 0
    while consumed + 46 <= size and found <= stop_after:
        header = f.read(46)
        if len(header) < 46 or header[:4] != b"PK\x01\x02":
            break
        name, extra, comment = struct.unpack("<HHH", header[28:34])
        f.seek(name + extra + comment, os.SEEK_CUR)
        consumed += 46 + name + extra + comment
        found += 1
    return found


def _member_damage(exc: BaseException) -> str:
    """Why a member could not be unpacked, in words: zipfile's messages quote names as Python
    bytes reprs (`header b'x.png'`) and its compression errors carry zlib's codes."""
    text = str(exc)
    if isinstance(exc, NotImplementedError) or "compression" in text:
        return (
            "cannot be read: it uses a compression method that is not supported (zip it again "
            "with the standard Deflate method)"
        )
    if "Bad CRC-32" in text:
        return "is damaged: its contents do not match the checksum stored in the archive"
    if "File name in directory" in text:
        return (
            "is damaged: the archive's directory and the entry's own header name different "
            "files (was the archive edited by hand?)"
        )
    if "Overlapped entries" in text:
        return "overlaps another entry in the archive (a zip bomb?)"
    if isinstance(exc, EOFError) or "Truncated" in text or "truncated" in text:
        return "is damaged: the archive ends inside this entry (is it truncated?)"
    if isinstance(exc, zlib.error):
        return "is damaged: its compressed data cannot be unpacked"
    return "is damaged and cannot be read (the archive is corrupt)"


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)  # Unix mode bits live in the high 16 bits


def _escapes(name: str) -> bool:
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in name.split("/")


def _path_refusal(info: zipfile.ZipInfo, name: str) -> tuple[str, str] | None:
    """(reason, code) for a member whose path leaves the archive or that is a link."""
    if _escapes(name):
        return "the path leaves the archive (zip slip)", "zip_slip"
    if _is_symlink(info):
        return "symbolic links are not allowed", "symlink"
    return None


class ZipSource:
    """A zip of images with captions, read lazily; listing problems come first from records()."""

    format = "image_zip"
    container = "zip"
    encoding: str | None = None

    def __init__(self, path: str, limits: ImportLimits) -> None:
        self.path = path
        self.limits = limits
        self.size = os.path.getsize(path)
        self.warnings: list[str] = []
        self.image_dir: str | None = None
        self._listing_errors: list[DatasetError] = []
        self._refused: set[str] = set()
        self._resolved: dict[str, tuple[str | None, DatasetError | None]] = {}
        self._read_total = 0
        self._bytes_read = 0
        self._check_entry_count(
            *_declared_entries(path, min(limits.max_zip_members, MAX_ZIP_ENTRIES))
        )
        try:
            self.zf = zipfile.ZipFile(path)
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise DatasetError(
                f"not a valid zip file ({exc}); is it truncated?", code="bad_zip"
            ) from None
        try:
            self._list(infos)
        except BaseException:
            self.zf.close()
            raise

    # -- listing -------------------------------------------------------------------------------

    def _refuse(self, name: str, reason: str, code: str) -> None:
        self._refused.add(name)
        self._listing_errors.append(DatasetError(reason, path=name, code=code))

    def _list(self, infos: list[zipfile.ZipInfo]) -> None:
        self._check_archive(infos)
        self.members: dict[str, zipfile.ZipInfo] = {}
        docs: list[str] = []
        for info in infos:
            name = info.filename.replace("\\", "/")
            # A path out of the archive or a link is refused even where it would be skipped.
            unsafe = _path_refusal(info, name)
            if unsafe is not None:
                self._refuse(info.filename, *unsafe)
                continue
            if info.is_dir() or _JUNK.search(name):
                continue
            if _DOCS.search(name):
                docs.append(name)
                continue
            refusal = self._member_refusal(info, name)
            if refusal is not None:
                self._refuse(info.filename, *refusal)
                continue
            self.members[name] = info
        orphans, strays, unread_texts = self._pair_captions()
        if not self.images and not self._listing_errors:
            raise DatasetError(
                f"the archive holds no images ({_IMAGE_NAMES}); an image set is a zip of images "
                f"with a .txt caption beside each, or a {METADATA_NAME}",
                code="no_images",
            )
        for name in strays:
            self._refuse(name, _stray_reason(name), "not_image_or_caption")
            del self.members[name]
        if orphans:
            self._listing_errors.append(
                DatasetError(
                    f"{len(orphans):,} caption file(s) have no image beside them: "
                    f"{_names(orphans)}",
                    code="orphan_caption",
                )
            )
        if docs:
            self.warnings.append(f"skipped {len(docs):,} documentation file(s): {_names(docs)}")
        if unread_texts:
            self.warnings.append(
                f"ignored {len(unread_texts):,} .txt file(s): the captions come from "
                f"{self.metadata}: {_names(unread_texts)}"
            )

    def _check_entry_count(self, entries: int, exact: bool = True) -> None:
        limit = min(self.limits.max_zip_members, MAX_ZIP_ENTRIES)
        if entries > limit and not exact:  # the end record lied; the walk stopped past the limit
            raise DatasetError(
                f"the archive has more than {limit:,} entries (the limit)",
                code="too_many_members",
            )
        if entries > limit:
            raise DatasetError(
                f"the archive has {entries:,} entries; the limit is {limit:,}",
                code="too_many_members",
            )

    def _check_archive(self, infos: list[zipfile.ZipInfo]) -> None:
        """Refuse the whole archive: too many entries, an Office file, too big unpacked."""
        limits = self.limits
        self._check_entry_count(len(infos))
        names = {i.filename for i in infos}
        if "[Content_Types].xml" in names:
            kind = (
                "an Excel workbook" if any(n.startswith("xl/") for n in names) else "an Office file"
            )
            raise DatasetError(
                f"this is {kind}, not a zip of images: save the sheet as CSV (UTF-8) and upload that",
                code="office_file",
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_uncompressed_bytes:
            raise DatasetError(
                f"the archive would unpack to {human_bytes(declared)} (its declared uncompressed "
                f"size); the limit is {human_bytes(limits.max_uncompressed_bytes)}",
                code="too_big_uncompressed",
            )

    def _member_refusal(self, info: zipfile.ZipInfo, name: str) -> tuple[str, str] | None:
        """(reason, code) when one member may not be unpacked, else None."""
        limits = self.limits
        if name in self.members:
            return "appears twice in the archive", "duplicate_member"
        if info.flag_bits & 0x1:
            return "is encrypted", "encrypted"
        if name.lower().endswith(ARCHIVE_EXTENSIONS):
            return "nested archives are not allowed", "nested_archive"
        if info.file_size > limits.max_member_bytes:
            return (
                f"uncompressed size {human_bytes(info.file_size)} (declared); the limit per file "
                f"is {human_bytes(limits.max_member_bytes)}",
                "member_too_big",
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_MIN_BYTES and ratio > limits.max_compression_ratio:
            return (
                f"compression ratio {ratio:,.0f}:1; the limit is "
                f"{limits.max_compression_ratio:,.0f}:1 (a zip bomb?): uncompressed size "
                f"{human_bytes(info.file_size)} (declared) from {human_bytes(info.compress_size)}",
                "zip_bomb",
            )
        return None

    def _pair_captions(self) -> tuple[list[str], list[str], list[str]]:
        """Find the metadata file or pair each image with its caption.

        Returns (captions with no image, members that are neither, .txt files a metadata.jsonl
        leaves unread).
        """
        metadata = [n for n in self.members if posixpath.basename(n) == METADATA_NAME]
        if len(metadata) > 1:
            raise DatasetError(
                f"the archive has {len(metadata)} {METADATA_NAME} files ({', '.join(sorted(metadata))}); "
                "keep one",
                code="many_metadata",
            )
        self.metadata = metadata[0] if metadata else None
        images = [n for n in self.members if posixpath.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        self.images = sorted(images)
        texts = {n for n in self.members if n.lower().endswith(".txt")}
        self._captions: dict[str, str] = {}
        orphans: list[str] = []
        unread: list[str] = []
        if self.metadata is None:
            # `cat.txt` beside `cat.png`, or `cat.png.txt` as some captioning tools write it
            stems = {posixpath.splitext(n)[0] for n in self.images} | set(self.images)
            orphans = sorted(t for t in texts if posixpath.splitext(t)[0] not in stems)
            for img in self.images:
                stem = posixpath.splitext(img)[0]
                for cand in (stem + ".txt", stem + ".TXT", img + ".txt"):
                    if cand in texts:
                        self._captions[img] = cand
                        break
        else:
            unread = sorted(texts)
        known = set(self.images) | texts | ({self.metadata} if self.metadata else set())
        strays = sorted(n for n in self.members if n not in known)
        return orphans, strays, unread

    @property
    def columns(self) -> list[str]:
        return ["file_name", "text"] if self.metadata is None else self._metadata_columns()

    def _metadata_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in self._iter_metadata(limit=100):
            if isinstance(item, Rec):
                seen.update(dict.fromkeys(item.data))
        return list(seen) or ["file_name", "text"]

    # -- reading -------------------------------------------------------------------------------

    def bytes_read(self) -> int:
        return min(self._bytes_read, self.size)

    def _read_member(self, name: str) -> bytes:
        """The member's bytes, counted while decompressing (headers are not trusted)."""
        info = self.members[name]
        limits = self.limits
        chunks = []
        n = 0
        try:
            with self.zf.open(info) as f:
                while chunk := f.read(1 << 16):
                    n += len(chunk)
                    self._read_total += len(chunk)
                    if n > info.file_size or n > limits.max_member_bytes:
                        bound = min(info.file_size, limits.max_member_bytes)
                        over = "its declared size" if n > info.file_size else "the limit per file"
                        raise DatasetError(
                            f"actual uncompressed size passes {human_bytes(bound)}, {over} "
                            "(a zip bomb?)",
                            path=name,
                            code="zip_bomb",
                        )
                    if self._read_total > limits.max_uncompressed_bytes:
                        raise DatasetError(
                            "the archive's actual uncompressed size passes "
                            f"{human_bytes(limits.max_uncompressed_bytes)}, the limit",
                            code="too_big_uncompressed",
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            raise DatasetError(_member_damage(exc), path=name, code="bad_member") from None
        finally:
            self._bytes_read += info.compress_size
        if n >= RATIO_MIN_BYTES and n / max(info.compress_size, 1) > limits.max_compression_ratio:
            raise DatasetError(
                f"compression ratio {n / max(info.compress_size, 1):,.0f}:1; the limit is "
                f"{limits.max_compression_ratio:,.0f}:1 (a zip bomb?): uncompressed size "
                f"{human_bytes(n)} (actual) from {human_bytes(info.compress_size)}",
                path=name,
                code="zip_bomb",
            )
        data = b"".join(chunks)
        if (
            not name.lower().endswith(".txt")
            and data.startswith(ARCHIVE_MAGIC)
            and not data.startswith(b"BZh")
        ):
            raise DatasetError("nested archives are not allowed", path=name, code="nested_archive")
        return data

    def _text(self, name: str) -> str:
        data = self._read_member(name)
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Notepad's "Unicode"
            try:
                return data.decode("utf-16")
            except UnicodeDecodeError:
                raise DatasetError(
                    "starts with a UTF-16 byte-order mark but is not UTF-16 text",
                    path=name,
                    code="bad_encoding",
                ) from None
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
        raise DatasetError("is not UTF-8 or GB18030 text", path=name, code="bad_encoding")

    def resolve_image(self, file_name: str) -> tuple[str | None, DatasetError | None]:
        """(`<sha256>.<ext>`, None) for a real image in the archive, else (None, error).

        `file_name` is relative to the folder of metadata.jsonl (the archive root otherwise).
        """
        base = posixpath.dirname(self.metadata) if self.metadata else ""
        name = posixpath.normpath(posixpath.join(base, file_name.replace("\\", "/")))
        if name in self._resolved:
            return self._resolved[name]
        result: tuple[str | None, DatasetError | None]
        if _escapes(name) or file_name.startswith("/"):
            result = (
                None,
                DatasetError(
                    f'image "{show(file_name)}" points outside the archive', code="zip_slip"
                ),
            )
        elif name in self._refused or file_name in self._refused:
            result = (
                None,
                DatasetError(
                    f'image "{show(file_name)}" was refused (see its own error)',
                    code="refused_member",
                ),
            )
        elif name not in self.members:
            result = (
                None,
                DatasetError(
                    f'image "{show(file_name)}" is not in the archive', code="missing_image"
                ),
            )
        else:
            try:
                ext, data = check_image(self._read_member(name), self.limits.max_image_pixels)
            except DatasetError as exc:
                if exc.code == "too_big_uncompressed":
                    raise
                result = None, exc
            except ValueError as exc:
                result = None, DatasetError(str(exc), path=name, code="not_image")
            else:
                stored = f"{hashlib.sha256(data).hexdigest()}.{ext}"
                if self.image_dir is not None:
                    target = os.path.join(self.image_dir, stored)
                    if not os.path.exists(target):
                        with open(target, "wb") as out:
                            out.write(data)
                result = stored, None
        self._resolved[name] = result
        return result

    def _iter_metadata(self, limit: int | None = None) -> Iterator[Rec | DatasetError]:
        assert self.metadata is not None
        text = self._text(self.metadata)
        base = posixpath.dirname(self.metadata)
        listed: set[str] = set()
        count = 0
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if len(line) > self.limits.max_line_chars:
                yield DatasetError(
                    f"longer than {self.limits.max_line_chars:,} characters (the limit)",
                    path=self.metadata,
                    line=lineno,
                    code="line_too_long",
                )
                continue
            if exceeds_depth(line, self.limits.max_json_depth):
                yield DatasetError(
                    f"nested deeper than {self.limits.max_json_depth} levels",
                    path=self.metadata,
                    line=lineno,
                    code="too_deep",
                )
                continue
            try:
                # Read as strictly as a JSONL file: a repeated key, NaN or a 5,000-digit number
                # is an error at its line, never a crash or a silent pick.
                obj = STRICT_JSON.decode(line)
            except json.JSONDecodeError as exc:
                where = "char" if exc.msg.endswith(" at") else "at char"
                yield DatasetError(
                    f"not valid JSON ({exc.msg} {where} {exc.pos})",
                    path=self.metadata,
                    line=lineno,
                    code="invalid_json",
                )
                continue
            except RecursionError:
                yield DatasetError(
                    f"nested deeper than {self.limits.max_json_depth} levels",
                    path=self.metadata,
                    line=lineno,
                    code="too_deep",
                )
                continue
            except ValueError:  # refused by STRICT_JSON: say what and where
                yield self._json_refused(line, lineno)
                continue
            if not isinstance(obj, dict):
                yield DatasetError(
                    f"expected a JSON object, got {json_type_name(obj)}",
                    path=self.metadata,
                    line=lineno,
                    code="not_object",
                )
                continue
            if may_hold_surrogate(line) and (problem := find_problem(obj)) is not None:
                column, reason = problem.column_reason()
                yield DatasetError(
                    reason, path=self.metadata, line=lineno, column=column, code=problem.code
                )
                continue
            for key in CAPTION_KEYS:
                if isinstance(obj.get(key), str):
                    obj[key] = obj[key].strip()
            fn = obj.get("file_name")
            if isinstance(fn, str):
                listed.add(posixpath.normpath(posixpath.join(base, fn.replace("\\", "/"))))
            count += 1
            yield Rec(None, lineno, self.metadata, obj)
            if limit is not None and count >= limit:
                return
        unlisted = [n for n in self.images if n not in listed]
        if unlisted:
            shown = ", ".join(unlisted[:5]) + (", …" if len(unlisted) > 5 else "")
            warning = f"{len(unlisted):,} image(s) not in {METADATA_NAME} were ignored: {shown}"
            if warning not in self.warnings:  # the file is read for the columns, then the rows
                self.warnings.append(warning)

    def _json_refused(self, line: str, lineno: int) -> DatasetError:
        """The error for a metadata line STRICT_JSON refused, with the key that holds it."""
        try:
            problem = explain_json(line, len(line) - len(line.lstrip()))
        except json.JSONDecodeError as exc:  # refused before the parser reached a syntax error
            where = "char" if exc.msg.endswith(" at") else "at char"
            return DatasetError(
                f"not valid JSON ({exc.msg} {where} {exc.pos})",
                path=self.metadata,
                line=lineno,
                code="invalid_json",
            )
        if problem is None:  # pragma: no cover - STRICT_JSON refuses only what this finds
            return DatasetError(
                "has a value that cannot be read",
                path=self.metadata,
                line=lineno,
                code="invalid_json",
            )
        column, reason = problem.column_reason()
        return DatasetError(
            reason, path=self.metadata, line=lineno, column=column, code=problem.code
        )

    def records(self) -> Iterator[Rec | DatasetError]:
        yield from self._listing_errors
        if self.metadata is not None:
            yield from self._iter_metadata()
            return
        for image in self.images:
            caption_name = self._captions.get(image)
            if caption_name is None:
                stem = posixpath.splitext(image)[0]
                yield DatasetError(
                    f"no caption ({stem}.txt is missing)", path=image, code="missing_caption"
                )
                continue
            try:
                caption = self._text(caption_name).strip()
            except DatasetError as exc:
                yield exc
                continue
            if not caption:
                yield DatasetError("the caption is empty", path=caption_name, code="empty")
                continue
            yield Rec(None, None, image, {"file_name": image, "text": caption})

    def close(self) -> None:
        self.zf.close()
