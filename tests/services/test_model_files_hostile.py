"""Hostile model files: a GGUF header is validated with bounded counts when it is registered, the
conversion runs under a memory cap, and a refused admin registration writes nothing."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.urls import reverse_lazy
from django.utils.html import escape

from apps.audit.models import AuditEvent
from apps.models import services
from apps.models.models import BaseModel, ImageAsset

F32, STRING, ARRAY, U32 = 0, 8, 9, 4


def gstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, value_type: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", value_type) + payload


def kv_string(key: str, value: str) -> bytes:
    return kv(key, STRING, gstr(value))


def tensor(name: str, dims: list[int], ggml_type: int = F32, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


ARCH = kv_string("general.architecture", "llama")
NAME = kv_string("general.name", "hostile")
WEIGHT = tensor("tok_embd.weight", [8])


def gguf(
    kvs: list[bytes] = (ARCH, NAME),  # type: ignore[assignment]
    tensors: list[bytes] = (WEIGHT,),  # type: ignore[assignment]
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kvs: int | None = None,
    data: bytes = b"\0" * 32,
) -> bytes:
    """A GGUF file: header, KVs, tensor infos, padding to 32 bytes, then the tensor data."""
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kvs is None else n_kvs,
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % 32) + data


def data_start(kvs: list[bytes], tensors: list[bytes]) -> int:
    size = 24 + sum(map(len, kvs)) + sum(map(len, tensors))
    return size + -size % 32


OFFSET_PAST_END = [WEIGHT[:-8] + struct.pack("<Q", 4096)]
CUT_MID_KV = gguf()[: 24 + len(ARCH) + len(gstr("general.name")) + 4 + 3]

HOSTILE = {
    "bad magic": (b"PK\x03\x04" + gguf()[4:], "not a GGUF file (bad magic bytes)"),
    "version 1": (gguf(version=1), "GGUF version 1 is not supported (only 2 and 3)"),
    "version 99": (gguf(version=99), "GGUF version 99 is not supported (only 2 and 3)"),
    "tensor count 2^60": (
        gguf(n_tensors=1 << 60),
        "header: declares 2^60 tensors; at most 100,000 are accepted",
    ),
    "tensor count beyond the file": (
        gguf(n_tensors=5_000),
        f"header: declares 5,000 tensors, more than a file of {len(gguf()):,} bytes can "
        "describe (each needs at least 32 bytes)",
    ),
    "KV count 2^40": (
        gguf(n_kvs=1 << 40),
        "header: declares 2^40 KVs; at most 10,000 are accepted",
    ),
    "string length past the end": (
        gguf([ARCH, kv("general.name", STRING, struct.pack("<Q", 1 << 40) + b"hostile")]),
        "KV 1 (`general.name`): string length 2^40 is past the end of the file",
    ),
    "key length past the end": (
        gguf([ARCH, struct.pack("<Q", 1 << 40) + b"general.name"]),
        "KV 1: string length 2^40 is past the end of the file",
    ),
    "string over the cap": (
        gguf([ARCH, kv_string("general.name", "x" * (1024 * 1024 + 1))]),
        "KV 1 (`general.name`): string length 1,048,577 is over the 1 MiB limit",
    ),
    "array of 2^50 elements": (
        gguf([ARCH, kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 1 << 50))]),
        "KV 1 (`tokenizer.ggml.tokens`): array of 2^50 elements is past the end of the file",
    ),
    "array of arrays": (
        gguf([ARCH, kv("tokenizer.ggml.merges", ARRAY, struct.pack("<IQ", ARRAY, 1))]),
        "KV 1 (`tokenizer.ggml.merges`): arrays of arrays are not supported",
    ),
    "unknown value type": (
        gguf([ARCH, kv("general.name", 13, b"\0" * 8)]),
        "KV 1 (`general.name`): unknown value type 13",
    ),
    "five dimensions": (
        gguf(tensors=[tensor("blk.0.attn_q.weight", [2, 2, 2, 2, 2])]),
        "tensor 0 (`blk.0.attn_q.weight`): 5 dimensions; GGML allows at most 4",
    ),
    "a dimension of 0": (
        gguf(tensors=[tensor("blk.0.attn_q.weight", [8, 0])]),
        "tensor 0 (`blk.0.attn_q.weight`): dimension 1 is 0",
    ),
    "unknown tensor type": (
        gguf(tensors=[tensor("blk.0.attn_q.weight", [8], ggml_type=99)]),
        "tensor 0 (`blk.0.attn_q.weight`): unknown GGML tensor type 99",
    ),
    "tensor offset past the end": (
        gguf(tensors=OFFSET_PAST_END),
        f"tensor 0 (`tok_embd.weight`): data ends at byte "
        f"{data_start([ARCH, NAME], OFFSET_PAST_END) + 4096 + 32:,} past the file's end "
        f"{len(gguf(tensors=OFFSET_PAST_END)):,}",
    ),
    "truncated mid-KV": (
        CUT_MID_KV,
        f"KV 1 (`general.name`): the file is cut short: it ends at byte {len(CUT_MID_KV)}, "
        "inside this entry",
    ),
    "no architecture": (
        gguf([NAME]),
        "no general.architecture key: not a model transformers can import",
    ),
}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A real GGUF of the tiny Llama, written with the `gguf` package's writer."""
    from workers.ml.models import build_tiny_llama, export_llama_gguf

    root = tmp_path_factory.mktemp("gguf")
    return export_llama_gguf(build_tiny_llama(root / "tiny", seed=0), root / "import" / "tiny.gguf")


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_gguf_header_is_refused_at_registration_saying_where(db, people, tmp_path, case):
    content, reason = HOSTILE[case]
    file = tmp_path / "hostile.gguf"
    file.write_bytes(content)

    with pytest.raises(ValidationError) as info:
        services.model_register_gguf(name="Hostile", gguf_path=str(file), actor=people["admin"])

    assert info.value.message_dict == {"path": [f"hostile.gguf: {reason}"]}
    assert not BaseModel.objects.filter(name="Hostile").exists()
    assert not AuditEvent.objects.filter(action="model.register").exists()


def test_a_valid_tiny_gguf_registers_and_converts_on_first_use(
    db, people, settings, tmp_path, tiny_gguf
):
    settings.MODELS_DIR = tmp_path / "models"
    model = services.model_register_gguf(
        name="Tiny GGUF", gguf_path=str(tiny_gguf), actor=people["admin"]
    )
    assert model.status == "pending"
    assert model.info["gguf"] == {"architecture": "llama", "version": 3, "tensors": 21}

    folder = services.model_folder(model)

    model.refresh_from_db()
    assert model.status == "ready" and model.architecture == "LlamaForCausalLM"
    assert (folder / "model.safetensors").is_file() and model.parameters == 147_776


def test_a_conversion_over_its_memory_cap_fails_the_job_clearly(
    db, people, settings, tmp_path, tiny_gguf
):
    settings.MODELS_DIR = tmp_path / "models"
    settings.GGUF_CONVERT_MEMORY_BYTES = 200 * 1024 * 1024
    model = services.model_register_gguf(
        name="Capped", gguf_path=str(tiny_gguf), actor=people["admin"]
    )
    reason = "tiny.gguf: conversion needed more than 0.2 GiB of memory (the limit for converting this file)"

    with pytest.raises(Exception, match=reason.replace("(", r"\(").replace(")", r"\)")):
        services.model_folder(model)

    model.refresh_from_db()
    assert (model.status, model.error) == ("error", reason)
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name != ".locks"]
    assert leftovers == []  # the half-written temp folder is gone


def test_a_well_formed_gguf_of_an_unknown_architecture_fails_first_use_with_its_reason(
    db, people, settings, tmp_path
):
    settings.MODELS_DIR = tmp_path / "models"
    file = tmp_path / "odd.gguf"
    file.write_bytes(gguf([kv_string("general.architecture", "someday"), NAME]))
    model = services.model_register_gguf(name="Odd", gguf_path=str(file), actor=people["admin"])

    with pytest.raises(Exception, match="odd.gguf: conversion failed: "):
        services.model_folder(model)

    model.refresh_from_db()
    assert model.status == "error" and "someday" in model.error
    assert "Traceback" not in model.error


# ---------------------------------------------------------------- safetensors headers


def safetensors(header: dict, data: bytes = b"\0" * 8) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def f32(shape: list[int], offsets: list[int], dtype: str = "F32") -> dict:
    return {"w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}


BROKEN_SAFETENSORS = {
    "header length 2^40": (
        struct.pack("<Q", 1 << 40) + b"{}",
        "header length 2^40 is past the end of the file (10 bytes)",
    ),
    "not JSON": (struct.pack("<Q", 8) + b"not json", "the header is not JSON (line 1, column 1)"),
    "unknown dtype": (safetensors(f32([2], [0, 8], "F128")), "tensor `w`: unknown dtype 'F128'"),
    "offsets past the end": (
        safetensors(f32([1024], [0, 4096])),
        "tensor `w`: data ends at byte 4,096 past the end of the data (8 bytes)",
    ),
    "shape and offsets disagree": (
        safetensors(f32([3], [0, 8])),
        "tensor `w`: shape [3] of F32 needs 12 bytes, its data_offsets span 8",
    ),
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from workers.ml.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.mark.parametrize("case", BROKEN_SAFETENSORS)
def test_a_broken_safetensors_header_is_refused_saying_what(
    db, people, tmp_path, tiny_folder, case
):
    content, reason = BROKEN_SAFETENSORS[case]
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "broken"))
    (folder / "model.safetensors").write_bytes(content)

    with pytest.raises(ValidationError) as info:
        services.model_register_folder(name="Broken", path=str(folder), actor=people["admin"])

    assert info.value.message_dict == {
        "path": [f"model.safetensors: not a valid safetensors file: {reason}"]
    }
    assert not BaseModel.objects.filter(name="Broken").exists()


# ---------------------------------------------------------------- through the admin

ADD_MODEL = reverse_lazy("admin:basemodels_basemodel_add")
ADD_ASSET = reverse_lazy("admin:basemodels_imageasset_add")


def test_a_refused_gguf_in_the_admin_shows_the_error_and_writes_nothing(admin_client, tmp_path):
    file = tmp_path / "hostile.gguf"
    file.write_bytes(gguf(n_tensors=1 << 60))
    logs, models = LogEntry.objects.count(), BaseModel.objects.count()

    response = admin_client.post(
        ADD_MODEL,
        {"name": "Hostile", "source": "gguf", "reference": str(file), "enabled": "on"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    reason = "hostile.gguf: header: declares 2^60 tensors; at most 100,000 are accepted"
    assert escape(reason) in page
    assert response.context["adminform"].form.errors == {"reference": [reason]}
    assert "was added successfully" not in page
    assert (LogEntry.objects.count(), BaseModel.objects.count()) == (logs, models)
    assert not AuditEvent.objects.filter(action="model.register").exists()


def test_a_valid_gguf_in_the_admin_is_added_once_with_one_log_entry(admin_client, tiny_gguf):
    response = admin_client.post(
        ADD_MODEL,
        {"name": "Tiny GGUF", "source": "gguf", "reference": str(tiny_gguf), "enabled": "on"},
        follow=True,
    )

    assert "was added successfully" in response.content.decode()
    model = BaseModel.objects.get(name="Tiny GGUF")
    assert (model.source, model.status) == ("gguf", "pending")
    assert LogEntry.objects.filter(object_id=str(model.pk)).count() == 1


def test_a_refused_asset_in_the_admin_shows_the_error_and_writes_nothing(admin_client, tmp_path):
    missing = tmp_path / "crisp.safetensors"
    logs = LogEntry.objects.count()

    response = admin_client.post(
        ADD_ASSET, {"kind": "lora", "name": "crisp", "path": str(missing), "enabled": "on"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "path": [f"{missing}: no such file on the server"]
    }
    assert "was added successfully" not in response.content.decode()
    assert LogEntry.objects.count() == logs and not ImageAsset.objects.exists()
