// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Atelier provenance registry
/// @notice Records Merkle roots of batches of approved outputs (and single hashes), each exactly
/// once, with the block, time and account that recorded it. Anyone can read a record and check
/// an inclusion proof against it; nothing here needs the recorder's cooperation.
/// @dev Leaves are keccak256 of the output's 32-byte SHA-256 (workers/chain/merkle.py); inner
/// nodes hash the sorted pair, as OpenZeppelin's MerkleProof does, so a proof is just the list
/// of siblings. A record is one storage slot:
///     submitter (160 bits) | blockNumber (40) | timestamp (32) | count (24)
/// Writing is open to any account: the record keeps who wrote it, and a verifier that trusts
/// one Atelier instance checks the submitter against that instance's address.
contract ProvenanceRegistry {
    /// @notice The largest item count one root can carry (2^24 - 1).
    uint64 public constant MAX_COUNT = 16777215;

    mapping(bytes32 => uint256) private _roots;
    mapping(bytes32 => uint256) private _hashes;

    event RootRecorded(bytes32 indexed root, uint64 count, address indexed submitter);
    event HashRecorded(bytes32 indexed hash, address indexed submitter);

    /// @notice Record the Merkle root of a batch of `count` items. Reverts if already recorded.
    function recordRoot(bytes32 root, uint64 count) external {
        require(root != bytes32(0), "ProvenanceRegistry: zero root");
        require(count != 0 && count <= MAX_COUNT, "ProvenanceRegistry: count out of range");
        require(_roots[root] == 0, "ProvenanceRegistry: root already recorded");
        _roots[root] = _pack(count);
        emit RootRecorded(root, count, msg.sender);
    }

    /// @notice Record one 32-byte hash (count 1). Reverts if already recorded.
    function recordHash(bytes32 hash) external {
        require(hash != bytes32(0), "ProvenanceRegistry: zero hash");
        require(_hashes[hash] == 0, "ProvenanceRegistry: hash already recorded");
        _hashes[hash] = _pack(1);
        emit HashRecorded(hash, msg.sender);
    }

    /// @notice The record of `root`; all zeros when it was never recorded.
    function rootRecord(bytes32 root)
        external
        view
        returns (uint64 count, uint64 blockNumber, uint64 timestamp, address submitter)
    {
        return _unpack(_roots[root]);
    }

    /// @notice The record of a single `hash`; all zeros when it was never recorded.
    function hashRecord(bytes32 hash)
        external
        view
        returns (uint64 count, uint64 blockNumber, uint64 timestamp, address submitter)
    {
        return _unpack(_hashes[hash]);
    }

    /// @notice True when `proof` leads from `leaf` to `root` (sorted-pair keccak256). It checks
    /// the arithmetic only: whether `root` was recorded is `rootRecord`'s answer.
    function verify(bytes32 root, bytes32 leaf, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        bytes32 node = leaf;
        for (uint256 i = 0; i < proof.length; ++i) {
            node = _hashPair(node, proof[i]);
        }
        return node == root;
    }

    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32 value) {
        (bytes32 lo, bytes32 hi) = a < b ? (a, b) : (b, a);
        assembly ("memory-safe") {
            mstore(0x00, lo)
            mstore(0x20, hi)
            value := keccak256(0x00, 0x40)
        }
    }

    function _pack(uint64 count) private view returns (uint256) {
        // Block numbers past 2^40 and times past 2106 (2^32 s) cannot be stored: fail loudly
        // rather than record a wrapped value.
        require(
            block.number < (1 << 40) && block.timestamp < (1 << 32),
            "ProvenanceRegistry: block out of range"
        );
        return (uint256(uint160(msg.sender)) << 96) | (block.number << 56)
            | (block.timestamp << 24) | uint256(count);
    }

    function _unpack(uint256 packed)
        private
        pure
        returns (uint64 count, uint64 blockNumber, uint64 timestamp, address submitter)
    {
        count = uint64(packed & 0xFFFFFF);
        timestamp = uint64((packed >> 24) & 0xFFFFFFFF);
        blockNumber = uint64((packed >> 56) & 0xFFFFFFFFFF);
        submitter = address(uint160(packed >> 96));
    }
}
