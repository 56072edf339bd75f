"""C2PA Content Credentials for generated PNGs: a signed manifest saying "made by this model",
pointing at the output's on-chain provenance record.

What goes in the manifest:

- ``c2pa.actions``: one ``c2pa.created`` action with IPTC's ``trainedAlgorithmicMedia`` digital
  source type, the model as its software agent (and in its parameters, with the adapter);
- ``org.atelier.provenance`` (ours): the SHA-256 recorded on chain and, once the record is on
  chain, the chain id, the registry contract, the transaction and block, and where to verify.

**The hash on chain and the credential.** Embedding a manifest changes the file's bytes, so the
credentialed file cannot be the one whose SHA-256 is on chain. Decision:

1. The chain records the SHA-256 of the *original* PNG (the gallery file; ``Output.sha256``).
   That file is never rewritten.
2. The credential goes into a sibling copy (:func:`credentialed_path`: ``<name>.c2pa.png``),
   offered as a separate download. Its ``org.atelier.provenance`` assertion names the original's
   SHA-256, so a reader of the manifest can look the record up (``/verify/<sha256>/``).
3. c2pa-rs adds exactly one ``caBX`` chunk to a PNG and changes nothing else, so the original's
   bytes are the copy without its ``caBX`` chunks (:func:`strip_credentials`, pure and cheap;
   :func:`original_sha256`). The verify page uses it: a credentialed copy verifies too, and its
   claim about the original is checked, not trusted. The manifest's own hard binding
   (``c2pa.hash.data``) covers every other byte of the copy.

Signing: ES256 with a certificate chain. Production configures its own certificate and key
(:func:`signing_from_files`); development uses :func:`dev_signing`, which makes, on first use, a
development CA and a leaf certificate with the extensions c2pa-rs requires of a signer
(digitalSignature key usage, emailProtection extended key usage, not self-signed, authority key
id) and keeps them under a folder. A reader that does not trust that CA reports
``signingCredential.untrusted``; everything else validates. The CA's key is not kept.

Pure code: no Django. The native c2pa library is imported only by the functions that sign or
read manifests, so importing this module (for :func:`strip_credentials`) costs nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ATELIER_ASSERTION",
    "ChainRecordRef",
    "Credentials",
    "CredentialsError",
    "SigningConfig",
    "credentialed_path",
    "dev_signing",
    "embed_credentials",
    "has_credentials",
    "original_sha256",
    "read_credentials",
    "signing_from_files",
    "stream_hashes",
    "strip_credentials",
]

ATELIER_ASSERTION = "org.atelier.provenance"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CREDENTIALS_CHUNK = b"caBX"  # the C2PA manifest store in a PNG
UNTRUSTED = "signingCredential.untrusted"
PNG_MIME = "image/png"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEV_FOLDER = "c2pa-dev"
DEV_CHAIN, DEV_KEY, DEV_CA = "chain.pem", "signer.key", "ca.pem"
DEV_LEAF_DAYS = 5 * 365
DEV_CA_DAYS = 10 * 365


class CredentialsError(Exception):
    """Signing or reading Content Credentials failed (the message says why)."""


@dataclass(frozen=True)
class ChainRecordRef:
    """Where an output's SHA-256 is recorded on chain (chain fields empty while it waits)."""

    sha256: str
    chain_id: int | None = None
    contract: str = ""
    tx_hash: str = ""
    block_number: int | None = None
    verify_url: str = ""

    def assertion(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(frozen=True)
class SigningConfig:
    """A signer for manifests: the PEM chain (leaf first, then intermediates) and its key."""

    cert_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    alg: str = "es256"
    tsa_url: str | None = None  # an RFC 3161 timestamp authority; None: no timestamp
    trust_anchor_pem: bytes | None = None  # the dev CA, for readers that choose to trust it


@dataclass(frozen=True)
class Credentials:
    """What a reader found in a file's manifest store."""

    validation_state: str  # "Invalid", "Valid" or "Trusted" (c2pa-rs)
    failures: list[str]  # validation failure codes of the active manifest
    actions: list[dict[str, Any]]
    provenance: dict[str, Any] | None  # our assertion, when present
    signer: dict[str, Any]  # signature_info: issuer, common name, algorithm
    manifest: dict[str, Any]  # the active manifest as c2pa-rs reports it

    @property
    def ok_but_untrusted(self) -> bool:
        """Every check passed except the trust list (a development certificate)."""
        return set(self.failures) <= {UNTRUSTED}


# --------------------------------------------------------------------------- PNG chunks (pure)


def _chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, length with header and CRC) of each chunk; ValueError when not a PNG."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, i = [], len(_PNG_SIGNATURE)
    while i + 12 <= len(data):
        (size,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        out.append((kind, i, size + 12))
        i += size + 12
        if kind == b"IEND":
            break
    if i > len(data):
        raise ValueError("truncated PNG chunk")
    return out


def has_credentials(data: bytes) -> bool:
    """True for a PNG that carries a C2PA manifest store (a caBX chunk)."""
    try:
        return any(kind == CREDENTIALS_CHUNK for kind, _, _ in _chunks(data))
    except ValueError:
        return False


def strip_credentials(data: bytes) -> bytes:
    """The PNG without its C2PA chunks: for a copy made by :func:`embed_credentials`, exactly
    the original's bytes. ValueError when `data` is not a PNG."""
    kept = [data[o : o + n] for kind, o, n in _chunks(data) if kind != CREDENTIALS_CHUNK]
    return _PNG_SIGNATURE + b"".join(kept)


def original_sha256(data: bytes) -> str:
    """SHA-256 of the PNG without its C2PA chunks (the hash recorded on chain)."""
    return hashlib.sha256(strip_credentials(data)).hexdigest()


def stream_hashes(f: IO[bytes], *, block: int = 1 << 20) -> tuple[str, str | None]:
    """(SHA-256 of the whole stream, SHA-256 without its C2PA chunks, or None when it is not a
    PNG with any) in one pass and constant memory: for untrusted uploads of any size."""
    whole, original = hashlib.sha256(), hashlib.sha256()

    def take(n: int) -> bytes:
        data = f.read(n)
        whole.update(data)
        return data

    head = take(len(_PNG_SIGNATURE))
    found, feeding = False, head == _PNG_SIGNATURE
    original.update(head)
    while feeding:
        header = take(8)
        if len(header) < 8:
            original.update(header)
            break
        kind, left = header[4:8], int.from_bytes(header[:4], "big") + 4  # data + CRC
        found |= kind == CREDENTIALS_CHUNK
        if kind != CREDENTIALS_CHUNK:
            original.update(header)
        while left > 0:
            data = take(min(left, block))
            if not data:
                break
            left -= len(data)
            if kind != CREDENTIALS_CHUNK:
                original.update(data)
        feeding = kind != b"IEND" and left == 0
    while take(block):  # anything after IEND is not part of the original
        pass
    return whole.hexdigest(), original.hexdigest() if found else None


def credentialed_path(path: str | os.PathLike[str]) -> Path:
    """Where the credentialed copy of `path` lives: ``a.png`` → ``a.c2pa.png``."""
    p = Path(path)
    return p.with_name(p.stem + ".c2pa" + p.suffix)


# --------------------------------------------------------------------------- signing material


def signing_from_files(
    cert_chain: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    *,
    alg: str = "es256",
    tsa_url: str | None = None,
) -> SigningConfig:
    """A production signer: a PEM certificate chain and its private key, from files."""
    return SigningConfig(
        cert_chain_pem=Path(cert_chain).read_bytes(),
        private_key_pem=Path(private_key).read_bytes(),
        alg=alg,
        tsa_url=tsa_url or None,
    )


def dev_signing(folder: str | os.PathLike[str]) -> SigningConfig:
    """The development signer kept under `folder`/c2pa-dev, made on first use (and again once
    its leaf certificate has expired). Safe when two processes make it at once: each writes a
    complete folder elsewhere and renames it into place; the loser uses the winner's."""
    target = Path(folder) / DEV_FOLDER
    if not _dev_usable(target):
        _dev_create(target)
    return SigningConfig(
        cert_chain_pem=(target / DEV_CHAIN).read_bytes(),
        private_key_pem=(target / DEV_KEY).read_bytes(),
        trust_anchor_pem=(target / DEV_CA).read_bytes(),
    )


def _dev_usable(target: Path) -> bool:
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates((target / DEV_CHAIN).read_bytes())[0]
        (target / DEV_KEY).stat()
        (target / DEV_CA).stat()
    except (OSError, ValueError, IndexError):
        return False
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return leaf.not_valid_after_utc > soon


def _dev_create(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".c2pa-dev-", dir=target.parent))
    try:
        chain, key, ca = _dev_material()
        (staging / DEV_CHAIN).write_bytes(chain)
        (staging / DEV_CA).write_bytes(ca)
        fd = os.open(staging / DEV_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        if target.exists():  # expired or incomplete: moved aside, then replaced
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            pass  # another process put its complete folder there first
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _name(common_name: str):
    from cryptography.x509 import Name, NameAttribute
    from cryptography.x509.oid import NameOID

    return Name(
        [
            NameAttribute(NameOID.COMMON_NAME, common_name),
            NameAttribute(NameOID.ORGANIZATION_NAME, "Atelier development"),
        ]
    )


def _key_usage(*, sign: bool, ca: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _dev_material() -> tuple[bytes, bytes, bytes]:
    """(leaf + CA chain PEM, leaf key PEM, CA PEM): a P-256 CA and a signing leaf under it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Atelier development CA"))
        .issuer_name(_name("Atelier development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=DEV_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("Atelier development signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=DEV_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = ca.public_bytes(pem)
    return leaf.public_bytes(pem) + ca_pem, key_pem, ca_pem


# --------------------------------------------------------------------------- manifests


def build_manifest(
    *, model: str, record: ChainRecordRef, adapter: str = "", title: str = ""
) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes (see the module docstring)."""
    agent: dict[str, Any] = {"name": model}
    parameters: dict[str, Any] = {"model": model}
    if adapter:
        parameters["adapter"] = adapter
    return {
        "claim_generator_info": [{"name": "Atelier", "version": _version()}],
        "title": title or "output.png",
        "format": PNG_MIME,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": agent,
                            "parameters": parameters,
                        }
                    ]
                },
            },
            {"label": ATELIER_ASSERTION, "data": record.assertion()},
        ],
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("atelier")
    except PackageNotFoundError:
        return "0.1.0"


def embed_credentials(
    source: str | os.PathLike[str] | bytes,
    dest: str | os.PathLike[str],
    *,
    model: str,
    signing: SigningConfig,
    record: ChainRecordRef | None = None,
    adapter: str = "",
    title: str = "",
) -> str:
    """Write `source` (a PNG) to `dest` with a signed C2PA manifest; return dest's SHA-256.

    `record` defaults to the source's own SHA-256 with no chain fields. The source is not
    changed, its text chunks (A1111 ``parameters``) are kept, and `dest` is written to a
    temporary file and renamed, so readers never see half a file."""
    import c2pa

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if has_credentials(data):
        raise CredentialsError("the source already carries Content Credentials")
    _chunks(data)  # ValueError for a file that is not a PNG
    record = record or ChainRecordRef(sha256=hashlib.sha256(data).hexdigest())
    if record.sha256 != hashlib.sha256(data).hexdigest():
        raise CredentialsError("the record's SHA-256 is not the source file's")
    manifest = build_manifest(model=model, record=record, adapter=adapter, title=title)
    out = io.BytesIO()
    try:
        info = c2pa.C2paSignerInfo(
            signing.alg, signing.cert_chain_pem, signing.private_key_pem, signing.tsa_url
        )
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as b:
            b.sign(signer, PNG_MIME, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise CredentialsError(f"c2pa could not sign: {exc}") from exc
    signed = out.getvalue()
    if strip_credentials(signed) != data:  # the promise the module docstring makes
        raise CredentialsError("c2pa changed more than its own chunk of the PNG")
    _write_atomic(Path(dest), signed)
    return hashlib.sha256(signed).hexdigest()


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=dest.suffix, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_credentials(
    source: str | os.PathLike[str] | bytes, *, trust_anchor_pem: bytes | None = None
) -> Credentials | None:
    """The active manifest of a PNG and its validation (None when it carries none).
    `trust_anchor_pem`: CA certificates to trust besides none (the dev CA, in tests)."""
    import c2pa

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not has_credentials(data):
        return None
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchor_pem:
        settings["trust"] = {"trust_anchors": trust_anchor_pem.decode("ascii")}
    try:
        with c2pa.Context.from_dict(settings) as context:
            with c2pa.Reader(PNG_MIME, io.BytesIO(data), context=context) as reader:
                manifest = reader.get_active_manifest() or {}
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
    except c2pa.C2paError as exc:
        raise CredentialsError(f"c2pa could not read the manifest: {exc}") from exc
    return _credentials(manifest, state, results)


def _credentials(manifest: dict[str, Any], state: str, results: dict[str, Any]) -> Credentials:
    failures = [f["code"] for f in results.get("activeManifest", {}).get("failure", [])]
    actions: list[dict[str, Any]] = []
    provenance = None
    for assertion in manifest.get("assertions", []):
        label = assertion.get("label", "")
        if label.startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
        elif label == ATELIER_ASSERTION:
            provenance = assertion.get("data")
    return Credentials(
        validation_state=state,
        failures=failures,
        actions=actions,
        provenance=provenance,
        signer=manifest.get("signature_info", {}),
        manifest=manifest,
    )
