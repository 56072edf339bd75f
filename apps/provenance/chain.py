"""The node, as the platform reaches it: a Web3 from CHAIN_RPC_URL and fees from its blocks.

Tests swap `connect` for an in-process chain (eth-tester)."""

from __future__ import annotations

from web3 import Web3

from apps.provenance.conf import ChainConfig, chain_config

RPC_TIMEOUT_S = 15
DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when the node cannot suggest one


def connect(cfg: ChainConfig | None = None) -> Web3:
    """A Web3 talking to the configured node (CHAIN_RPC_URL)."""
    cfg = cfg or chain_config()
    if not cfg.rpc_url:
        raise RuntimeError("CHAIN_RPC_URL is not set: no Ethereum node is configured")
    return Web3(Web3.HTTPProvider(cfg.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))


def fees_now(w3: Web3) -> dict[str, int]:
    """EIP-1559 fees from the node: its suggested tip, and a fee cap of twice the latest base
    fee plus that tip (room for six full blocks of base-fee rises)."""
    base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    try:
        tip = int(w3.eth.max_priority_fee)
    except Exception:  # noqa: BLE001 - nodes without eth_maxPriorityFeePerGas
        tip = DEFAULT_PRIORITY_FEE
    return {"max_fee_per_gas": 2 * base + tip, "max_priority_fee_per_gas": tip}


def is_dev_chain(w3: Web3) -> bool:
    """True for a local development node (anvil, hardhat) that takes `anvil_setBalance`."""
    version = str(w3.client_version).lower()
    return version.startswith("anvil") or "hardhat" in version
