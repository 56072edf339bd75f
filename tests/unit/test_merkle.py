"""workers/chain/merkle.py: sorted-pair keccak trees. Agreement with the contract's own `verify`
is checked on chain in test_chain_contract.py."""

import hashlib
import random

import pytest

from workers.chain.merkle import (
    MerkleTree,
    build_tree,
    hash_pair,
    keccak,
    leaf_for_sha256,
    verify_proof,
)

SEED = 13


def _leaves(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(32) for _ in range(n)]


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ---- the leaf rule -----------------------------------------------------------------------------


def test_the_leaf_is_keccak_of_the_32_raw_bytes_of_the_sha256():
    sha = hashlib.sha256(b"an approved output").hexdigest()

    assert leaf_for_sha256(sha) == keccak(bytes.fromhex(sha))
    assert leaf_for_sha256(sha.upper()) == leaf_for_sha256(sha)


def test_keccak_is_ethereums_not_nist_sha3():
    # keccak256("") as every Ethereum library knows it; NIST SHA3-256("") differs.
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak(b"") != hashlib.sha3_256(b"").digest()


@pytest.mark.parametrize(
    "bad",
    ["", "ab" * 31, "ab" * 33, "0x" + "ab" * 31, "0x" + "ab" * 32, "zz" * 32, " " + "a" * 63],
)
def test_leaf_for_sha256_rejects_anything_but_64_hex_digits(bad):
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        leaf_for_sha256(bad)


def test_leaf_for_sha256_rejects_bytes():
    with pytest.raises(ValueError):
        leaf_for_sha256(b"\x00" * 32)  # type: ignore[arg-type]


# ---- shape -------------------------------------------------------------------------------------


def test_one_leaf_is_its_own_root_with_an_empty_proof():
    leaf = keccak(b"only")

    tree = build_tree([leaf])

    assert tree.root == leaf
    assert tree.proof(0) == []
    assert verify_proof(leaf, [], tree.root)


def test_two_leaves_hash_the_smaller_first_whatever_their_order():
    a, b = b"\x01" * 32, b"\x02" * 32

    assert build_tree([a, b]).root == keccak(a + b)
    assert build_tree([b, a]).root == keccak(a + b)
    assert hash_pair(b, a) == hash_pair(a, b)


def test_an_odd_level_carries_its_last_node_up_unchanged():
    a, b, c = (keccak(bytes([i])) for i in range(3))

    tree = build_tree([a, b, c])

    assert tree.root == hash_pair(hash_pair(a, b), c)
    assert tree.proof(2) == [hash_pair(a, b)]  # no sibling on the first level
    assert tree.proof(0) == [b, c]


def test_duplicate_leaves_each_get_a_valid_proof():
    a, b = keccak(b"a"), keccak(b"b")

    tree = build_tree([a, b, a])

    assert [verify_proof(tree.leaves[i], tree.proof(i), tree.root) for i in range(3)] == [True] * 3
    assert build_tree([a, b]).root != tree.root


def test_it_refuses_an_empty_tree_and_leaves_that_are_not_32_bytes():
    with pytest.raises(ValueError, match="at least one leaf"):
        build_tree([])
    with pytest.raises(ValueError, match="leaf 1 is not 32 bytes"):
        build_tree([b"\x00" * 32, b"\x00" * 31])


def test_proof_index_out_of_range_raises():
    tree = build_tree([keccak(b"a"), keccak(b"b")])

    with pytest.raises(IndexError):
        tree.proof(2)
    with pytest.raises(IndexError):
        tree.proof(-1)


def test_malformed_inputs_do_not_verify():
    tree = build_tree([keccak(b"a"), keccak(b"b")])
    leaf, proof = tree.leaves[0], tree.proof(0)

    assert not verify_proof(leaf[:31], proof, tree.root)
    assert not verify_proof(leaf, [proof[0][:31]], tree.root)
    assert not verify_proof(leaf, proof, tree.root + b"\x00")
    assert not verify_proof(leaf.hex(), proof, tree.root)  # type: ignore[arg-type]


def test_a_tree_rebuilt_from_stored_leaves_gives_the_same_proofs():
    rng = random.Random(SEED + 2)
    built = build_tree(_leaves(rng, 37))

    again = MerkleTree(leaves=built.leaves, root=built.root)

    assert again == built
    assert [again.proof(i) for i in range(37)] == [built.proof(i) for i in range(37)]
    with pytest.raises(ValueError, match="not the root"):
        MerkleTree(leaves=built.leaves[:-1], root=built.root)


def test_its_repr_is_short():
    tree = build_tree(_leaves(random.Random(SEED), 1000))

    assert repr(tree) == f"MerkleTree(1000 leaves, root=0x{tree.root.hex()})"


# ---- property: every size from 1 to 1,000 ------------------------------------------------------


def _check_size(rng: random.Random, n: int, other_root: bytes) -> None:
    leaves = _leaves(rng, n)
    tree = build_tree(leaves)
    assert tree.leaves == tuple(leaves)
    assert len(tree.root) == 32
    indices = range(n) if n <= 64 else sorted({0, n - 1, *rng.sample(range(n), 12)})
    depth = max(0, (n - 1).bit_length())
    for i in indices:
        proof = tree.proof(i)
        assert len(proof) <= depth
        assert verify_proof(leaves[i], proof, tree.root), (n, i)
        # A wrong leaf, another tree's root, a tampered or shortened proof: all fail.
        assert not verify_proof(_flip(leaves[i], rng.randrange(256)), proof, tree.root)
        assert not verify_proof(leaves[i], proof, other_root)
        if proof:
            k = rng.randrange(len(proof))
            tampered = [*proof[:k], _flip(proof[k], rng.randrange(256)), *proof[k + 1 :]]
            assert not verify_proof(leaves[i], tampered, tree.root), (n, i, k)
            assert not verify_proof(leaves[i], proof[:-1], tree.root)
            if n > 1:
                j = (i + 1) % n
                if leaves[j] != leaves[i]:
                    assert not verify_proof(leaves[j], proof, tree.root)


def test_every_size_from_1_to_1000_proves_its_leaves_and_rejects_tampering():
    rng = random.Random(SEED)
    other_root = build_tree(_leaves(rng, 7)).root
    for n in range(1, 1001):
        _check_size(rng, n, other_root)


def test_trees_are_deterministic_and_order_sensitive():
    rng = random.Random(SEED + 1)
    leaves = _leaves(rng, 100)

    assert build_tree(leaves).root == build_tree(list(leaves)).root
    assert build_tree(leaves).root != build_tree(list(reversed(leaves))).root
