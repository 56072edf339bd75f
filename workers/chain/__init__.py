"""Pure web3 code (hashing, Merkle trees, contract calls, signing). Never imports Django.

py_ecc (under eth_account and web3) raises the interpreter's recursion limit to 100,000 when it
is first imported. With that limit a deeply nested input (a hostile JSON upload) overflows the C
stack and kills the process instead of raising RecursionError. Importing them here first, and
putting the limit back, keeps every process that loads this package as safe as one that does not.
"""

import sys

_LIMIT = sys.getrecursionlimit()
import eth_account  # noqa: E402,F401
import web3  # noqa: E402,F401

sys.setrecursionlimit(_LIMIT)
