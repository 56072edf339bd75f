"""workers/chain/keys.py: where the signing key comes from, and that it never shows."""

import json
import traceback

import pytest
from eth_account import Account

from workers.chain.keys import (
    ANVIL_DEV_ADDRESS,
    ANVIL_DEV_KEY,
    DEV_KEY_NOTE,
    SignerConfigError,
    load_signer,
    sign_tx,
)
from workers.chain.merkle import keccak

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address


def _secret_free(text: str) -> bool:
    bare = KEY[2:]
    return bare not in text.lower() and bare[:16] not in text.lower()


def _private_file(path, content: str, mode: int = 0o600):
    path.write_text(content)
    path.chmod(mode)
    return str(path)


def _error(environ) -> SignerConfigError:
    with pytest.raises(SignerConfigError) as info:
        load_signer(environ)
    rendered = "".join(traceback.format_exception(info.value))
    assert _secret_free(rendered), rendered
    return info.value


def test_it_loads_the_key_from_the_environment_with_or_without_0x():
    assert load_signer({"CHAIN_PRIVATE_KEY": KEY}).address == ADDRESS
    assert load_signer({"CHAIN_PRIVATE_KEY": KEY[2:] + "\n"}).address == ADDRESS


def test_the_account_never_shows_its_key():
    account = load_signer({"CHAIN_PRIVATE_KEY": KEY})

    for text in (repr(account), str(account), f"{account}", repr([account])):
        assert _secret_free(text)
        assert ADDRESS in text


def test_it_loads_the_key_from_a_private_file(tmp_path):
    path = _private_file(tmp_path / "key", KEY + "\n")

    assert load_signer({"CHAIN_PRIVATE_KEY_FILE": path}).address == ADDRESS


def test_it_refuses_a_key_file_others_can_read(tmp_path):
    path = _private_file(tmp_path / "key", KEY, mode=0o644)

    error = _error({"CHAIN_PRIVATE_KEY_FILE": path})

    assert error.variable == "CHAIN_PRIVATE_KEY_FILE"
    assert "0644" in str(error) and "chmod 600" in str(error)


def test_it_names_a_missing_key_file(tmp_path):
    error = _error({"CHAIN_PRIVATE_KEY_FILE": str(tmp_path / "nope")})

    assert error.variable == "CHAIN_PRIVATE_KEY_FILE"
    assert "cannot read" in str(error)


def test_it_decrypts_a_keystore_with_its_password_file(tmp_path):
    keystore = _private_file(tmp_path / "ks.json", json.dumps(Account.encrypt(KEY, "s3cret pw")))
    password = _private_file(tmp_path / "pw", "s3cret pw\n")

    account = load_signer({"CHAIN_KEYSTORE": keystore, "CHAIN_KEYSTORE_PASSWORD_FILE": password})

    assert account.address == ADDRESS


def test_it_reports_a_wrong_keystore_password_or_a_missing_password_file(tmp_path):
    keystore = _private_file(tmp_path / "ks.json", json.dumps(Account.encrypt(KEY, "right")))
    wrong = _private_file(tmp_path / "pw", "wrong")

    error = _error({"CHAIN_KEYSTORE": keystore, "CHAIN_KEYSTORE_PASSWORD_FILE": wrong})
    assert error.variable == "CHAIN_KEYSTORE" and "wrong password" in str(error)

    error = _error({"CHAIN_KEYSTORE": keystore})
    assert error.variable == "CHAIN_KEYSTORE_PASSWORD_FILE"


def test_it_refuses_a_file_that_is_not_a_keystore(tmp_path):
    keystore = _private_file(tmp_path / "ks.json", '{"hello": 1}')
    password = _private_file(tmp_path / "pw", "x")

    error = _error({"CHAIN_KEYSTORE": keystore, "CHAIN_KEYSTORE_PASSWORD_FILE": password})

    assert error.variable == "CHAIN_KEYSTORE"


def test_no_key_names_the_variables_to_set():
    error = _error({"CHAIN_PRIVATE_KEY": ""})

    for name in ("CHAIN_PRIVATE_KEY_FILE", "CHAIN_KEYSTORE", "CHAIN_PRIVATE_KEY"):
        assert name in str(error)


def test_two_sources_at_once_are_refused(tmp_path):
    path = _private_file(tmp_path / "key", KEY)

    error = _error({"CHAIN_PRIVATE_KEY": KEY, "CHAIN_PRIVATE_KEY_FILE": path})

    assert "only one of" in str(error)


@pytest.mark.parametrize(
    "bad",
    [KEY[:-1], KEY + "0", KEY[:-2] + "zz", "0x" + "00" * 32, "0x" + "ff" * 32],
    ids=["short", "long", "not-hex", "zero", "past-curve-order"],
)
def test_a_malformed_key_is_refused_without_echoing_it(bad):
    error = _error({"CHAIN_PRIVATE_KEY": bad})

    assert error.variable == "CHAIN_PRIVATE_KEY"
    assert bad[2:20] not in str(error)
    assert error.__cause__ is None and error.__context__ is None


def test_sign_tx_returns_the_raw_transaction_and_its_hash():
    account = load_signer({"CHAIN_PRIVATE_KEY": KEY})
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": "0x" + "11" * 20,
        "value": 0,
        "data": "0x",
        "gas": 21_000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }

    raw, tx_hash = sign_tx(account, {**tx, "from": account.address})

    assert isinstance(raw, bytes) and raw[0] == 2  # EIP-1559 envelope
    assert tx_hash == "0x" + keccak(raw).hex()
    assert Account.recover_transaction(raw) == ADDRESS
    assert sign_tx(account, tx) == (raw, tx_hash)  # deterministic (RFC 6979)


def test_the_dev_key_is_anvils_account_zero_and_its_note_says_so():
    assert load_signer({"CHAIN_PRIVATE_KEY": ANVIL_DEV_KEY}).address == ANVIL_DEV_ADDRESS
    assert "local development" in DEV_KEY_NOTE
    assert ANVIL_DEV_KEY[2:] not in DEV_KEY_NOTE


def test_loading_the_chain_code_keeps_the_interpreters_recursion_limit():
    """py_ecc (under web3) raises it to 100,000 on import; a deeply nested JSON upload would then
    overflow the C stack and kill the worker instead of being refused with its row."""
    import subprocess
    import sys

    code = (
        "import sys; before = sys.getrecursionlimit(); import workers.chain.contract, "
        "workers.chain.keys, workers.chain.proof; import web3, eth_account; "
        "assert sys.getrecursionlimit() == before, sys.getrecursionlimit()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
