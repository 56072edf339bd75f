"""Hostile files of the catalogued classes that the earlier catalogues did not hold (issue 15, the
second round), through what users touch: the upload page's first step, the API import job, the
gallery upload and model registration. Each is refused with what and where, never with Python's
internals, and leaves no row, job, staged upload or media file behind."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from apps.audit.models import AuditEvent
from apps.datasets import storage
from apps.datasets.models import DatasetVersion
from apps.jobs.models import Job
from apps.models import services as model_services
from apps.models.models import BaseModel
from apps.outputs.models import Output
from workers.tasks.runtime import execute_job

FIELDS = {"name": "Hostile", "license": "CC-BY-4.0", "source": "a stranger"}
# an address, an object repr, a traceback, an exception or plugin name, a bytes literal
INTERNALS = re.compile(
    r"0x[0-9a-fA-F]{4,}|<[^<>\s][^<>]*>|Traceback|\w+Error\b|\w+Plugin\b|\bb'|\bb\""
)


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def zipped(entries: list[tuple[str, bytes | str]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries:
            zf.writestr(name, body)
    return buffer.getvalue()


PNG = encode(Image.new("RGB", (8, 8), "red"), "PNG")


def media_files() -> list[str]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def staged_uploads() -> list[str]:
    root = storage.uploads_root()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(autouse=True)
def _own_folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


# --------------------------------------------------------------------------- upload page, step 1

STEP_ONE = {
    "pdf-named-csv": (
        "report.csv",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        "this is a PDF document, not a dataset: upload CSV, JSON or JSONL text",
    ),
    "utf-16-without-bom": (
        "qa.csv",
        "question,answer\nq,a\n".encode("utf-16-le"),
        "the file looks like UTF-16 text without a byte-order mark",
    ),
    "a-bare-json-string": ("qa.json", b'"hello"', "line 1: expected a JSON object, got a string"),
    "nfc-and-nfd-keys": (
        "qa.jsonl",
        json.dumps({"caf\u00e9": "q", "cafe\u0301": "a"}).encode() + b"\n",
        "are the same name written two ways (Unicode NFC and NFD); rename one",
    ),
    "a-zip-with-a-5001-digit-number-in-its-metadata": (
        "images.zip",
        zipped(
            [
                ("a.png", PNG),
                ("metadata.jsonl", '{"file_name": "a.png", "text": 1' + "0" * 5000 + "}\n"),
            ]
        ),
        'metadata.jsonl, line 1: column "text" is a number with 5,001 digits; the limit is 4,300',
    ),
}


@pytest.mark.parametrize("case", STEP_ONE)
def test_step_one_refuses_the_file_saying_what_is_wrong(logged_in, project, case):
    name, body, said = STEP_ONE[case]

    response = logged_in.post(
        reverse("datasets:upload", args=[project.pk]),
        {**FIELDS, "file": SimpleUploadedFile(name, body)},
    )

    assert response.status_code == 400, "the file reached the mapping step"
    page = html.unescape(response.content.decode())
    assert said in page
    assert staged_uploads() == [] and not Job.objects.exists()


# --------------------------------------------------------------------------- the API's job


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "body", "errors"),
    [
        (
            "images.zip",
            zipped(
                [
                    ("a.png", PNG),
                    (
                        "metadata.jsonl",
                        '{"file_name": "a.png", "text": "x"}\n'
                        '{"file_name": "a.png", "text": "x", "text": "y"}\n',
                    ),
                ]
            ),
            [
                'metadata.jsonl, line 2: column "text" appears twice in one object (a key may '
                "appear only once)"
            ],
        ),
        (
            "prefs.jsonl",
            b'{"chosen": "good", "rejected": "bad"}\n',
            ['missing column "prompt" (found: "chosen", "rejected")'],
        ),
        (
            "chat.jsonl",
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "weather?"},
                        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                    ]
                }
            ).encode(),
            [
                'line 1: column "messages", message 2: is a tool call; tool calls are not '
                "supported (leave such messages out)"
            ],
        ),
    ],
    ids=["metadata-duplicate-key", "preference-without-prompt", "tool-call"],
)
def test_the_api_job_fails_with_the_errors_and_stores_nothing(
    logged_in, project, name, body, errors
):
    response = logged_in.post(
        reverse("api:datasets", args=[project.pk]),
        {**FIELDS, "file": SimpleUploadedFile(name, body)},
    )
    assert response.status_code == 202, response.content

    execute_job(response.json()["id"], worker_id="test")
    job = logged_in.get(response["Location"]).json()

    assert job["state"] == "failed"
    assert [e["message"] for e in job["result"]["errors"]] == errors
    assert not INTERNALS.search(json.dumps(job))
    assert DatasetVersion.objects.count() == 0 and media_files() == []


def test_the_api_refuses_at_once_a_zip_whose_records_cannot_be_read(logged_in, project):
    body = zipped([("a.png", PNG), ("metadata.jsonl", '{"file_name": "a.png", "text": NaN}\n')])

    response = logged_in.post(
        reverse("api:datasets", args=[project.pk]),
        {**FIELDS, "file": SimpleUploadedFile("images.zip", body)},
    )

    assert response.status_code == 400
    assert [e["message"] for e in response.json()["error"]["errors"]] == [
        'metadata.jsonl, line 1: column "text" is NaN, which JSON does not allow (write a '
        "number, or null)"
    ]
    assert not Job.objects.exists() and staged_uploads() == [] and media_files() == []


# --------------------------------------------------------------------------- gallery upload


def gif_with_a_huge_screen() -> bytes:
    """A 1 x 1 GIF whose logical screen says 65,535 x 65,535."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)
    return bytes(data)


def bmp_with_huge_dimensions() -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, 50_000, 50_000, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 100, 0, 0, 54) + header


GALLERY_REFUSED = {
    "huge.gif": (
        gif_with_a_huge_screen(),
        "GIF images are not accepted; use PNG, JPEG or WebP",
    ),
    "huge.bmp": (
        bmp_with_huge_dimensions(),
        "BMP images are not accepted; use PNG, JPEG or WebP",
    ),
    "lossless.webp": (
        # a 16383 x 16383 lossless WebP header in a file of a few hundred bytes
        None,
        "has 268,402,689 pixels; the limit is 4096 x 4096 = 16,777,216",
    ),
}


def huge_lossless_webp() -> bytes:
    data = bytearray(encode(Image.new("RGB", (64, 1)), "WEBP", lossless=True))
    at = data.find(b"VP8L") + 9
    bits = struct.unpack_from("<I", data, at)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", data, at, bits | 16382 | (16382 << 14))
    return bytes(data)


def gallery_state() -> tuple:
    return media_files(), Output.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize("name", GALLERY_REFUSED)
def test_a_hostile_gallery_upload_says_what_it_is_and_stores_nothing(
    db, client, project, people, name
):
    data, reason = GALLERY_REFUSED[name]
    data = data if data is not None else huge_lossless_webp()
    client.force_login(people["member"])
    before = gallery_state()

    response = client.post(
        reverse("galleries:upload", args=[project.pk]),
        {"file": SimpleUploadedFile(name, data)},
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"{name}: {reason}"), error
    assert not INTERNALS.search(error), error
    assert gallery_state() == before


@pytest.mark.parametrize(
    "name",
    ["\u202egnp.exe.png", "CON.png", "照片 2026.png", "x" * 300 + ".png"],
    ids=["rtl-override", "windows-device-name", "unicode", "300-characters"],
)
def test_odd_file_names_store_the_image_under_its_content_name(db, client, project, people, name):
    client.force_login(people["member"])

    response = client.post(
        reverse("galleries:upload", args=[project.pk]),
        {"file": SimpleUploadedFile(name, PNG)},
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 201, response.content
    output = Output.objects.get(pk=response.json()["id"])
    assert re.fullmatch(r"outputs/\d+/[0-9a-f]{64}\.png", output.file_path)
    assert len(output.params["uploaded"]) <= 200


def test_a_png_that_is_also_a_zip_is_stored_re_encoded_without_the_zip(db, client, project, people):
    client.force_login(people["member"])
    payload = zipped([("shell.php", "<?php system($_GET['c']); ?>")])

    response = client.post(
        reverse("galleries:upload", args=[project.pk]),
        {"file": SimpleUploadedFile("poly.png", PNG + payload)},
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 201, response.content
    stored = Path(settings.MEDIA_ROOT, Output.objects.get().file_path).read_bytes()
    assert b"PK\x03\x04" not in stored and b"<?php" not in stored


# --------------------------------------------------------------------------- model registration


def safetensors(header: dict | bytes, data: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def f32(name: str, count: int, begin: int) -> dict:
    return {name: {"dtype": "F32", "shape": [count], "data_offsets": [begin, begin + 4 * count]}}


BROKEN_SAFETENSORS = {
    "overlapping tensors": (
        safetensors({**f32("a", 2, 0), **f32("b", 1, 4)}, bytes(8)),
        "tensor `b`: data at bytes 4-8 overlaps tensor `a` (which ends at byte 8)",
    ),
    "a gap before a tensor": (
        safetensors(f32("a", 1, 4), bytes(8)),
        "tensor `a`: data starts at byte 4, leaving bytes 0-4 that no tensor uses",
    ),
    "data past the last tensor": (
        safetensors(f32("a", 2, 0), bytes(12)),
        "the tensors' data ends at byte 8 but the file holds 12 bytes of data",
    ),
    "a negative offset": (
        safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, bytes(8)),
        "tensor `a`: data_offsets is not [begin, end]",
    ),
    "an offset beyond 2^63": (
        safetensors(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [2**64, 2**64 + 8]}}, bytes(8)
        ),
        "tensor `a`: data ends at byte 18,446,744,073,709,551,624 past the end of the data "
        "(8 bytes)",
    ),
    "a tensor named twice": (
        safetensors(
            b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
            b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
            bytes(8),
        ),
        "the key `a` appears twice",
    ),
    "a 5,001-digit number": (
        safetensors(
            b'{"a": {"dtype": "F32", "shape": [1' + b"0" * 5000 + b'], "data_offsets": [0, 8]}}',
            bytes(8),
        ),
        "the header holds a number too long to read",
    ),
    "__metadata__ with a number": (
        safetensors({"__metadata__": {"format": 1}, **f32("a", 2, 0)}, bytes(8)),
        "__metadata__ is not a map of strings",
    ),
    "a header of a megabyte of spaces": (
        safetensors(b" " * (1 << 20), b""),
        "the header is not JSON (line 1, column 1048577)",
    ),
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


def refused_folder(people, folder: Path) -> str:
    with pytest.raises(ValidationError) as info:
        model_services.model_register_folder(
            name="Hostile", path=str(folder), actor=people["admin"]
        )
    assert not BaseModel.objects.filter(name="Hostile").exists()
    assert not AuditEvent.objects.filter(action="model.register").exists()
    (message,) = info.value.message_dict["path"]
    assert not INTERNALS.search(message), message
    return message


@pytest.mark.parametrize("case", BROKEN_SAFETENSORS)
def test_a_hostile_safetensors_header_is_refused_naming_the_tensor(
    db, people, tmp_path, tiny_folder, case
):
    content, reason = BROKEN_SAFETENSORS[case]
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "hostile"))
    (folder / "model.safetensors").write_bytes(content)

    assert refused_folder(people, folder) == (
        f"model.safetensors: not a valid safetensors file: {reason}"
    )


def test_custom_code_asked_for_in_the_tokenizer_config_is_refused(
    db, people, tmp_path, tiny_folder
):
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "hostile"))
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    data["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    config.write_text(json.dumps(data))

    assert refused_folder(people, folder) == (
        "tokenizer_config.json asks for custom code (auto_map): trust_remote_code is never enabled"
    )


def test_a_pickle_in_a_sub_folder_is_refused(db, people, tmp_path, tiny_folder):
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "hostile"))
    (folder / "extra").mkdir()
    (folder / "extra" / "optimizer.pt").write_bytes(b"\x80\x04\x95" + bytes(16))

    assert "extra/optimizer.pt" in refused_folder(people, folder)


def test_weights_that_link_to_a_pickle_elsewhere_are_refused(db, people, tmp_path, tiny_folder):
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "hostile"))
    outside = tmp_path / "elsewhere" / "weights.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"\x80\x04\x95" + bytes(64))
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(outside)

    message = refused_folder(people, folder)

    assert message.startswith("model.safetensors")


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".ckpt"])
def test_a_pickle_checkpoint_cannot_be_registered_as_a_single_file(db, people, tmp_path, suffix):
    file = tmp_path / f"model{suffix}"
    file.write_bytes(b"\x80\x04\x95" + bytes(16))

    with pytest.raises(ValidationError) as info:
        model_services.model_register_single_file(
            name="Pickle", path=str(file), actor=people["admin"]
        )

    assert info.value.message_dict == {
        "path": [f"model{suffix}: only .safetensors checkpoints (pickles can run code)"]
    }
    assert not BaseModel.objects.filter(name="Pickle").exists()


def gguf_with_strings_past_the_end() -> bytes:
    """A GGUF whose token array declares 3 strings, each of the 1 MiB limit, in a small file."""

    def gstr(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    arch = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
    tokens = (
        gstr("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + struct.pack("<Q", 1 << 20)
        + b"a" * 64
    )
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + arch + tokens


def test_a_gguf_whose_strings_run_past_the_end_is_refused_at_registration(db, people, tmp_path):
    file = tmp_path / "hostile.gguf"
    file.write_bytes(gguf_with_strings_past_the_end())

    with pytest.raises(ValidationError) as info:
        model_services.model_register_gguf(
            name="Hostile", gguf_path=str(file), actor=people["admin"]
        )

    assert info.value.message_dict == {
        "path": [
            "hostile.gguf: KV 1 (`tokenizer.ggml.tokens`), element 0: string length 1,048,576 "
            "is past the end of the file"
        ]
    }
    assert not BaseModel.objects.filter(name="Hostile").exists()
