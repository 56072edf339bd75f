"""Pure web3 code (hashing, Merkle trees, contract calls, signing). Never imports Django."""
