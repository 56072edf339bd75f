"""Image sets uploaded as a zip: safe listing, bounded reads, real-image checks, content addressing.

Two layouts are read: `name.txt` beside `name.png` (records sorted by image path, so the same set
zipped in another order gives the same version), or a `metadata.jsonl` whose lines carry
`file_name` (relative to the folder of metadata.jsonl) and `text`/`caption` (records in line order).
Nothing is ever extracted by its archive name: accepted images are written as `<sha256>.<ext>`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from workers.data.errors import DatasetError
from workers.data.limits import ImportLimits, exceeds_depth, human_bytes

__all__ = ["ALLOWED_IMAGE_FORMATS", "IMAGE_EXTENSIONS", "ZipSource", "check_image", "is_zip"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})
ALLOWED_IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
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
_JUNK = re.compile(r"(^|/)(__MACOSX/|\._|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_IMAGE_NAMES = ", ".join(ALLOWED_IMAGE_FORMATS)


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


class Rec(NamedTuple):
    row: int | None
    line: int | None
    path: str | None
    data: dict[str, Any]


def check_image(data: bytes, max_pixels: int) -> str:
    """The file extension for a real PNG/JPEG/WEBP/GIF/BMP image; ValueError(reason) otherwise.

    Only the header is parsed before the pixel count is checked, so a decompression bomb is refused
    before any pixel is allocated; then the image is verified and decoded once.
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_IMAGE_FORMATS))
        except Image.DecompressionBombError as exc:
            m = _BOMB_PIXELS.search(str(exc))
            pixels = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
            raise ValueError(
                f"has {pixels}; the limit is {max_pixels:,} (a decompression bomb?)"
            ) from None
        except UnidentifiedImageError:
            if data[:4] in (b"II*\x00", b"MM\x00*"):
                raise ValueError(f"TIFF images are not supported (use {_IMAGE_NAMES})") from None
            raise ValueError("not an image") from None
        except Exception as exc:  # a parser error on a broken header
            raise ValueError(f"not a valid image ({exc})") from None
        fmt = im.format or "?"
        width, height = im.size
        if width * height > max_pixels:
            raise ValueError(
                f"is {width:,} × {height:,} = {width * height:,} pixels; the limit is "
                f"{max_pixels:,} (a decompression bomb?)"
            )
        if width == 0 or height == 0:
            raise ValueError(f"is a {fmt} image with no pixels")
        try:
            im.verify()
            with Image.open(io.BytesIO(data), formats=[fmt]) as full:
                full.load()
        except Exception as exc:
            raise ValueError(f"is a damaged {fmt} image ({exc})") from None
    return ALLOWED_IMAGE_FORMATS[fmt]


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
        for info in infos:
            name = info.filename.replace("\\", "/")
            # A path out of the archive or a link is refused even where it would be skipped.
            unsafe = _path_refusal(info, name)
            if unsafe is not None:
                self._refuse(info.filename, *unsafe)
                continue
            if info.is_dir() or _JUNK.search(name):
                continue
            refusal = self._member_refusal(info, name)
            if refusal is not None:
                self._refuse(info.filename, *refusal)
                continue
            self.members[name] = info
        ignored = self._pair_captions()
        if not self.images and not self._listing_errors:
            raise DatasetError(
                f"the archive holds no images ({_IMAGE_NAMES}); an image set is a zip of images "
                f"with a .txt caption beside each, or a {METADATA_NAME}",
                code="no_images",
            )
        if ignored:
            shown = ", ".join(ignored[:5]) + (", …" if len(ignored) > 5 else "")
            self.warnings.append(
                f"ignored {len(ignored):,} file(s) that are not images or captions: {shown}"
            )

    def _check_archive(self, infos: list[zipfile.ZipInfo]) -> None:
        """Refuse the whole archive: too many entries, an Office file, too big unpacked."""
        limits = self.limits
        if len(infos) > limits.max_zip_members:
            raise DatasetError(
                f"the archive has {len(infos):,} entries; the limit is {limits.max_zip_members:,}",
                code="too_many_members",
            )
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
                f"the archive would unpack to {human_bytes(declared)}; the limit is "
                f"{human_bytes(limits.max_uncompressed_bytes)}",
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
                f"unpacks to {human_bytes(info.file_size)}; the limit per file is "
                f"{human_bytes(limits.max_member_bytes)}",
                "member_too_big",
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= RATIO_MIN_BYTES and ratio > limits.max_compression_ratio:
            return (
                f"compression ratio {ratio:,.0f}:1; the limit is "
                f"{limits.max_compression_ratio:,.0f}:1 (a zip bomb?)",
                "zip_bomb",
            )
        return None

    def _pair_captions(self) -> list[str]:
        """Find the metadata file or pair each image with its caption; returns ignored names."""
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
        ignored: list[str] = []
        if self.metadata is None:
            stems = {posixpath.splitext(n)[0]: n for n in self.images}
            ignored.extend(t for t in sorted(texts) if posixpath.splitext(t)[0] not in stems)
            for img in self.images:
                stem = posixpath.splitext(img)[0]
                for cand in (stem + ".txt", stem + ".TXT"):
                    if cand in texts:
                        self._captions[img] = cand
                        break
        else:
            ignored.extend(sorted(texts))
        known = set(self.images) | texts | ({self.metadata} if self.metadata else set())
        ignored.extend(sorted(n for n in self.members if n not in known))
        return ignored

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
                        raise DatasetError(
                            "unpacks to more than its declared size (a zip bomb?)",
                            path=name,
                            code="zip_bomb",
                        )
                    if self._read_total > limits.max_uncompressed_bytes:
                        raise DatasetError(
                            "the archive unpacks to more than "
                            f"{human_bytes(limits.max_uncompressed_bytes)} (the limit)",
                            code="too_big_uncompressed",
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            raise DatasetError(f"cannot be read ({exc})", path=name, code="bad_member") from None
        finally:
            self._bytes_read += info.compress_size
        if n >= RATIO_MIN_BYTES and n / max(info.compress_size, 1) > limits.max_compression_ratio:
            raise DatasetError(
                f"compression ratio {n / max(info.compress_size, 1):,.0f}:1; the limit is "
                f"{limits.max_compression_ratio:,.0f}:1 (a zip bomb?)",
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
                DatasetError(f'image "{file_name}" points outside the archive', code="zip_slip"),
            )
        elif name in self._refused or file_name in self._refused:
            result = (
                None,
                DatasetError(
                    f'image "{file_name}" was refused (see its own error)', code="refused_member"
                ),
            )
        elif name not in self.members:
            result = (
                None,
                DatasetError(f'image "{file_name}" is not in the archive', code="missing_image"),
            )
        else:
            try:
                data = self._read_member(name)
                ext = check_image(data, self.limits.max_image_pixels)
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
                obj = json.loads(line)
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
            if not isinstance(obj, dict):
                yield DatasetError(
                    f"expected a JSON object, got {type(obj).__name__}",
                    path=self.metadata,
                    line=lineno,
                    code="not_object",
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
            self.warnings.append(
                f"{len(unlisted):,} image(s) not in {METADATA_NAME} were ignored: {shown}"
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
