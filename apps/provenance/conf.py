"""The chain settings (webapp/settings.py's CHAIN_* values), read and bounded in one place."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

MAX_BATCH_SIZE = 100_000


@dataclass(frozen=True)
class ChainConfig:
    rpc_url: str
    chain_id: int
    # A batch closes when this many records wait, or when the oldest has waited `batch_age`.
    batch_size: int
    batch_age: float
    # Blocks on top of the transaction's block before its records are final.
    confirmations: int
    # A transaction without a receipt this long is replaced (same nonce, higher fees).
    replace_after: float
    # How often the runner polls the node, and how often the scheduler runs the batcher.
    poll: float
    batcher_every: float
    # "https://etherscan.io/tx/{tx_hash}"; empty: no link.
    explorer_tx_url: str

    @property
    def enabled(self) -> bool:
        return bool(self.rpc_url)


def chain_config() -> ChainConfig:
    """The chain settings now (tests override settings.CHAIN and friends)."""
    raw = settings.CHAIN
    return ChainConfig(
        rpc_url=settings.CHAIN_RPC_URL,
        chain_id=int(settings.CHAIN_ID),
        batch_size=min(max(int(raw["BATCH_SIZE"]), 1), MAX_BATCH_SIZE),
        batch_age=max(float(raw["BATCH_AGE_SECONDS"]), 0.0),
        confirmations=max(int(raw["CONFIRMATIONS"]), 0),
        replace_after=max(float(raw["REPLACE_AFTER_SECONDS"]), 1.0),
        poll=max(float(raw["POLL_SECONDS"]), 0.01),
        batcher_every=max(float(raw["BATCHER_EVERY_SECONDS"]), 0.1),
        explorer_tx_url=settings.CHAIN_EXPLORER_TX_URL,
    )
