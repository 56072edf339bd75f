"""C2PA Content Credentials (workers.imaging.credentials): signed with a development CA, read
back with the assertions, the A1111 text intact, and the original's bytes recoverable."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from PIL import Image

from workers.imaging.credentials import (
    ATELIER_ASSERTION,
    TRAINED_ALGORITHMIC_MEDIA,
    UNTRUSTED,
    ChainRecordRef,
    CredentialsError,
    credentialed_path,
    dev_signing,
    embed_credentials,
    has_credentials,
    original_sha256,
    read_credentials,
    stream_hashes,
    strip_credentials,
)
from workers.imaging.infotext import read_png_parameters, read_png_text, write_png

c2pa = pytest.importorskip("c2pa", reason="c2pa-python is not installed")

INFOTEXT = "a cat in a hat, 猫\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, Seed: 7"


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return dev_signing(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "out.png"
    write_png(Image.new("RGB", (24, 16), (30, 90, 200)), path, INFOTEXT)
    return path


def _record(path) -> ChainRecordRef:
    return ChainRecordRef(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        tx_hash="0x" + "ab" * 32,
        block_number=12,
        verify_url="https://atelier.example/verify/",
    )


def test_a_png_gets_a_signed_manifest_that_reads_back_with_its_assertions(signing, png):
    record = _record(png)
    dest = credentialed_path(png)

    sha = embed_credentials(
        png, dest, model="demo-digits", adapter="cats", signing=signing, record=record
    )

    assert dest.name == "out.c2pa.png" and sha == hashlib.sha256(dest.read_bytes()).hexdigest()
    creds = read_credentials(dest)
    assert creds is not None
    [created] = creds.actions
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == "demo-digits"
    assert created["parameters"] == {"model": "demo-digits", "adapter": "cats"}
    assert creds.provenance == record.assertion()
    assert creds.provenance["sha256"] == record.sha256
    assert creds.provenance["tx_hash"] == "0x" + "ab" * 32
    assert creds.signer["common_name"] == "Atelier development signer"
    # Every check passes but the trust list: nobody trusts the development CA.
    assert creds.failures == [UNTRUSTED], creds.failures
    assert creds.ok_but_untrusted


def test_a_reader_that_trusts_the_dev_ca_finds_no_failure_at_all(signing, png):
    dest = credentialed_path(png)
    embed_credentials(png, dest, model="demo", signing=signing, record=_record(png))

    creds = read_credentials(dest, trust_anchor_pem=signing.trust_anchor_pem)

    assert creds.failures == [] and creds.validation_state == "Trusted"
    assert ATELIER_ASSERTION in {a["label"] for a in creds.manifest["assertions"]}


def test_the_infotext_survives_and_the_original_bytes_come_back(signing, png):
    original = png.read_bytes()
    dest = credentialed_path(png)
    embed_credentials(png, dest, model="demo", signing=signing)
    data = dest.read_bytes()

    assert png.read_bytes() == original  # the recorded file is never rewritten
    assert read_png_parameters(data) == INFOTEXT
    assert read_png_text(data)["ai_generated"] == "true"
    assert has_credentials(data) and not has_credentials(original)
    assert strip_credentials(data) == original
    assert original_sha256(data) == hashlib.sha256(original).hexdigest()
    assert Image.open(dest).tobytes() == Image.open(png).tobytes()


def test_a_tampered_copy_fails_validation(signing, png):
    dest = credentialed_path(png)
    embed_credentials(png, dest, model="demo", signing=signing)
    data = bytearray(dest.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # a byte of the image data, inside the hard binding

    creds = read_credentials(bytes(data))

    assert not creds.ok_but_untrusted
    assert any(code.startswith("assertion.dataHash") for code in creds.failures), creds.failures


def test_a_record_for_another_file_or_a_second_manifest_is_refused(signing, png, tmp_path):
    with pytest.raises(CredentialsError, match="not the source"):
        embed_credentials(
            png,
            tmp_path / "x.png",
            model="m",
            signing=signing,
            record=ChainRecordRef(sha256="0" * 64),
        )
    dest = credentialed_path(png)
    embed_credentials(png, dest, model="m", signing=signing)
    with pytest.raises(CredentialsError, match="already"):
        embed_credentials(dest, tmp_path / "y.png", model="m", signing=signing)
    with pytest.raises(ValueError, match="not a PNG"):
        embed_credentials(b"GIF89a", tmp_path / "z.png", model="m", signing=signing)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "z.png").exists()


def test_a_plain_png_has_no_credentials(png):
    assert read_credentials(png) is None


def test_the_dev_signer_is_made_once_and_its_key_is_private(tmp_path):
    first = dev_signing(tmp_path)
    second = dev_signing(tmp_path)

    assert first == second
    key = tmp_path / "c2pa-dev" / "signer.key"
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert first.cert_chain_pem.count(b"BEGIN CERTIFICATE") == 2
    assert b"PRIVATE KEY" not in first.cert_chain_pem


def test_stream_hashes_match_the_in_memory_ones_in_small_blocks(signing, png):
    original = png.read_bytes()
    dest = credentialed_path(png)
    embed_credentials(png, dest, model="demo", signing=signing)
    data = dest.read_bytes()

    whole, without = stream_hashes(io.BytesIO(data), block=7)

    assert whole == hashlib.sha256(data).hexdigest()
    assert without == hashlib.sha256(original).hexdigest() == original_sha256(data)
    assert stream_hashes(io.BytesIO(original)) == (hashlib.sha256(original).hexdigest(), None)
    assert stream_hashes(io.BytesIO(b"not a png at all")) == (
        hashlib.sha256(b"not a png at all").hexdigest(),
        None,
    )
    truncated = data[: len(data) // 2]
    assert stream_hashes(io.BytesIO(truncated))[0] == hashlib.sha256(truncated).hexdigest()
