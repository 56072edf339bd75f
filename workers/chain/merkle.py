"""Merkle trees over output hashes, compatible with the registry's `verify` and OpenZeppelin's
`MerkleProof.verify` (sorted-pair keccak256).

The rules, which a verifier elsewhere must follow exactly:

- **Leaf**: ``keccak256(bytes.fromhex(sha256_hex))``: keccak-256 of the 32 raw bytes of the
  output's SHA-256 (Solidity: ``keccak256(abi.encodePacked(bytes32 sha))``). Hashing the leaf
  from 32 bytes while inner nodes hash 64 keeps the two apart: an inner node cannot pass as a
  leaf without a keccak pre-image.
- **Inner node**: ``keccak256(min(a, b) + max(a, b))`` over the 32-byte values compared as
  big-endian numbers (bytes order), so a proof needs no left/right flags.
- **Levels**: leaves stay in the order given. Pairs (0,1), (2,3), ... are hashed; a level of odd
  length carries its last node up unchanged, so that node's proof has no sibling at that level.
- **One leaf**: the root is the leaf and the proof is empty.
- **Duplicates** are allowed: each copy gets its own index and a valid proof, and the tree (and
  root) changes with their number. Callers that want one entry per hash dedupe first.

Keccak comes from safe-pysha3's C extension where installed (about 4x faster per call), else
from pycryptodome, web3's own backend; both are called directly, without eth-hash's dispatch,
because building a 100,000-leaf tree is 100,000 calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

try:  # safe-pysha3 (Linux wheels); the module is called `sha3`
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        """keccak-256 (Ethereum's, not NIST SHA3-256) of `data`."""
        return _keccak_256(data).digest()

    KECCAK_BACKEND = "safe-pysha3"
except ImportError:  # pragma: no cover - depends on the platform's wheels
    from Crypto.Hash import keccak as _cryptodome_keccak

    def keccak(data: bytes) -> bytes:
        """keccak-256 (Ethereum's, not NIST SHA3-256) of `data`."""
        return _cryptodome_keccak.new(digest_bits=256, data=data).digest()

    KECCAK_BACKEND = "pycryptodome"

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def leaf_for_sha256(sha256_hex: str) -> bytes:
    """The tree leaf for an output whose SHA-256 is `sha256_hex` (64 hex digits, no 0x)."""
    if not isinstance(sha256_hex, str) or not _SHA256_HEX.fullmatch(sha256_hex):
        raise ValueError("a SHA-256 must be 64 hexadecimal digits")
    return keccak(bytes.fromhex(sha256_hex))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """An inner node: keccak-256 of the two children, the smaller first."""
    return keccak(a + b) if a <= b else keccak(b + a)


@dataclass(frozen=True, repr=False)
class MerkleTree:
    """A tree: the leaves in order, the root, and every level for proofs. `build_tree` makes
    one; `MerkleTree(leaves=..., root=...)` rebuilds one from stored leaves and checks its root."""

    leaves: tuple[bytes, ...]
    root: bytes
    # levels[0] is the leaves, levels[-1] is (root,).
    levels: tuple[tuple[bytes, ...], ...] = field(compare=False, default=())

    def __post_init__(self) -> None:
        if not self.levels:
            levels = _levels(_check_leaves(self.leaves))
            if levels[-1][0] != self.root:
                raise ValueError("the root is not the root of these leaves")
            object.__setattr__(self, "leaves", levels[0])
            object.__setattr__(self, "levels", levels)

    def __repr__(self) -> str:
        return f"MerkleTree({len(self.leaves)} leaves, root=0x{self.root.hex()})"

    def proof(self, index: int) -> list[bytes]:
        """The siblings from leaf `index` up to the root (empty for a one-leaf tree)."""
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"leaf index {index} out of range 0..{len(self.leaves) - 1}")
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def _check_leaves(leaves: Sequence[bytes]) -> tuple[bytes, ...]:
    level = tuple(leaves)
    if not level:
        raise ValueError("a Merkle tree needs at least one leaf")
    for i, leaf in enumerate(level):
        if not isinstance(leaf, bytes) or len(leaf) != 32:
            raise ValueError(f"leaf {i} is not 32 bytes")
    return level


def _levels(level: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], ...]:
    levels = [level]
    h: Callable[[bytes], bytes] = keccak
    while len(level) > 1:
        n = len(level)
        nxt = [
            h(a + b) if a <= b else h(b + a)
            for a, b in zip(level[0 : n - 1 : 2], level[1:n:2], strict=True)
        ]
        if n % 2:
            nxt.append(level[-1])
        level = tuple(nxt)
        levels.append(level)
    return tuple(levels)


def build_tree(leaves: Sequence[bytes]) -> MerkleTree:
    """Build the sorted-pair keccak tree over 32-byte `leaves`, kept in the given order."""
    levels = _levels(_check_leaves(leaves))
    return MerkleTree(leaves=levels[0], root=levels[-1][0], levels=levels)


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when `proof` leads from `leaf` to `root`; False for anything malformed."""
    if not (isinstance(leaf, bytes) and isinstance(root, bytes)):
        return False
    if len(leaf) != 32 or len(root) != 32:
        return False
    node = leaf
    h = keccak
    for sibling in proof:
        if not isinstance(sibling, bytes) or len(sibling) != 32:
            return False
        node = h(node + sibling) if node <= sibling else h(sibling + node)
    return node == root
