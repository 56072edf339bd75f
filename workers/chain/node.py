"""Talking to a chain node: connecting with a timeout, waiting for one to start, and fees."""

from __future__ import annotations

import time

from web3 import Web3

RPC_TIMEOUT_S = 20.0
# A tip of 1 gwei gets a transaction into the next block on mainnet and costs nothing on anvil.
DEFAULT_PRIORITY_FEE = 10**9


def connect(rpc_url: str, *, timeout: float = RPC_TIMEOUT_S) -> Web3:
    """A Web3 on `rpc_url` (HTTP) whose every request gives up after `timeout` seconds."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def wait_until_answers(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """Poll `rpc_url` until it reports a chain id (a node that has just been started)."""
    w3 = connect(rpc_url, timeout=1.0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            w3.eth.chain_id  # noqa: B018 - the request is the probe
            return connect(rpc_url)
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no chain node answered at {rpc_url} in {timeout:g} s"
                ) from None
            time.sleep(0.05)


def suggested_fees(
    w3: Web3, *, priority_fee: int = DEFAULT_PRIORITY_FEE, base_fee_multiplier: int = 2
) -> tuple[int, int]:
    """(max_fee_per_gas, max_priority_fee_per_gas) for an EIP-1559 transaction now: the usual
    twice the latest base fee plus the tip, which stays valid through six full blocks of rises."""
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    return base_fee * base_fee_multiplier + priority_fee, priority_fee
