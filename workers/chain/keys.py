"""The chain signing key: loaded only by the signer process, from the environment or files.

One of three sources, exactly one set:

- ``CHAIN_PRIVATE_KEY``: the key itself, 64 hex digits (0x optional). Simple, but it shows in
  the process environment; prefer one of the files in production.
- ``CHAIN_PRIVATE_KEY_FILE``: a file holding that hex key, readable by its owner only (0600).
- ``CHAIN_KEYSTORE``: an encrypted JSON keystore (``geth account new``, ``cast wallet new``,
  eth-account's ``Account.encrypt``), with ``CHAIN_KEYSTORE_PASSWORD_FILE`` holding its password.

Errors name the variable and what is wrong, never the key; the account returned shows only its
address in repr/str, so logging it is safe.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import encode_hex

KEY_VARIABLES = ("CHAIN_PRIVATE_KEY", "CHAIN_PRIVATE_KEY_FILE", "CHAIN_KEYSTORE")
# Every variable that reaches the signer process only (make run, the benches, compose).
SIGNER_ONLY_VARIABLES = (*KEY_VARIABLES, "CHAIN_KEYSTORE_PASSWORD_FILE")

# Anvil's (and Hardhat's) account #0, derived from the public test mnemonic "test test ... junk".
# Everyone knows this key: anything it holds on a public chain is taken within seconds.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV_KEY_NOTE = (
    "Using anvil's well-known development key #0 "
    f"({ANVIL_DEV_ADDRESS}). It is published in Foundry's documentation and every copy of "
    "anvil: use it only against a local development chain, never on a public network. Set "
    "CHAIN_PRIVATE_KEY_FILE or CHAIN_KEYSTORE (with CHAIN_KEYSTORE_PASSWORD_FILE) for a real key."
)

_HEX_KEY = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")


class SignerConfigError(ValueError):
    """The signing key's configuration is missing or wrong; `variable` names the setting."""

    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class SignerAccount(LocalAccount):
    """A LocalAccount whose repr and str show the address only."""

    def __repr__(self) -> str:
        return f"<SignerAccount {self.address}>"

    __str__ = __repr__


def _account(key_hex: str, variable: str) -> SignerAccount:
    key_hex = key_hex.strip()
    if not _HEX_KEY.fullmatch(key_hex):
        raise SignerConfigError(variable, "not a private key (expected 64 hexadecimal digits)")
    try:
        key = keys.PrivateKey(bytes.fromhex(key_hex.removeprefix("0x")))
    except Exception:  # zero, or past the curve order
        key = None
    if key is None:  # raised out here, no exception chained: nothing of the key travels with it
        raise SignerConfigError(variable, "not a valid secp256k1 private key")
    return SignerAccount(key, Account())


def _private_file(path_text: str, variable: str) -> Path:
    path = Path(path_text)
    try:
        st = path.stat()
    except OSError as exc:
        raise SignerConfigError(variable, f"cannot read {path} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SignerConfigError(variable, f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise SignerConfigError(
            variable,
            f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}",
        )
    return path


def _read(path: Path, variable: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SignerConfigError(variable, f"cannot read {path} ({exc})") from None


def _from_keystore(environ: Mapping[str, str]) -> SignerAccount:
    keystore = _private_file(environ["CHAIN_KEYSTORE"], "CHAIN_KEYSTORE")
    password_path = environ.get("CHAIN_KEYSTORE_PASSWORD_FILE", "")
    if not password_path:
        raise SignerConfigError(
            "CHAIN_KEYSTORE_PASSWORD_FILE", "must be set with CHAIN_KEYSTORE (a 0600 file)"
        )
    password_file = _private_file(password_path, "CHAIN_KEYSTORE_PASSWORD_FILE")
    # One trailing newline is the file's, not the password's (echo, editors).
    password = _read(password_file, "CHAIN_KEYSTORE_PASSWORD_FILE").removesuffix("\n")
    password = password.removesuffix("\r")
    try:
        keyfile = json.loads(_read(keystore, "CHAIN_KEYSTORE"))
    except json.JSONDecodeError:
        raise SignerConfigError("CHAIN_KEYSTORE", f"{keystore} is not JSON") from None
    problem = ""
    try:
        key = Account.decrypt(keyfile, password)
    except ValueError:
        problem = "wrong password (CHAIN_KEYSTORE_PASSWORD_FILE) or a damaged keystore"
    except Exception:
        problem = "not an encrypted JSON keystore"
    if problem:
        raise SignerConfigError("CHAIN_KEYSTORE", f"cannot decrypt {keystore}: {problem}")
    return _account(encode_hex(key), "CHAIN_KEYSTORE")


def load_signer(environ: Mapping[str, str] = os.environ) -> SignerAccount:
    """The signing account from `environ` (see the module docstring for the variables)."""
    present = [name for name in KEY_VARIABLES if environ.get(name)]
    if not present:
        raise SignerConfigError(
            "CHAIN_PRIVATE_KEY_FILE",
            "no signing key configured: set CHAIN_PRIVATE_KEY_FILE (a 0600 file holding a hex "
            "key), CHAIN_KEYSTORE with CHAIN_KEYSTORE_PASSWORD_FILE, or CHAIN_PRIVATE_KEY",
        )
    if len(present) > 1:
        raise SignerConfigError(present[1], f"set only one of {', '.join(present)}")
    source = present[0]
    if source == "CHAIN_PRIVATE_KEY":
        return _account(environ[source], source)
    if source == "CHAIN_PRIVATE_KEY_FILE":
        path = _private_file(environ[source], source)
        return _account(_read(path, source), source)
    return _from_keystore(environ)


def sign_tx(account: Any, tx: dict[str, Any]) -> tuple[bytes, str]:
    """Sign `tx` with `account`: (raw signed transaction bytes, transaction hash as 0x-hex)."""
    signed = account.sign_transaction(tx)
    return bytes(signed.raw_transaction), encode_hex(signed.hash)
