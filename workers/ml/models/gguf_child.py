"""The GGUF conversion child: `python -m workers.ml.models.gguf_child SOURCE TMP LIMIT`.

It caps its own address space (RLIMIT_AS) before importing torch, so a file that asks for more
memory than LIMIT bytes fails here, not in the worker. The exit status tells the parent what
happened (gguf_convert.MEMORY_EXIT, REFUSED_EXIT); a refusal's message is the last stdout line.
"""

from __future__ import annotations

import errno
import resource
import sys
from pathlib import Path

MEMORY_EXIT = 3  # the conversion ran out of its address-space cap
REFUSED_EXIT = 2  # refused or failed, with a message to show

# What allocators say when the cap is reached: numpy/Python raise MemoryError, torch's C++
# allocator a RuntimeError, mmap and dlopen an OSError.
MEMORY_WORDS = ("can't allocate memory", "cannot allocate memory", "failed to map segment")


def _cap_memory(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _is_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    text = str(exc).lower()
    return any(word in text for word in MEMORY_WORDS)


def main(argv: list[str]) -> int:
    source, tmp, limit = Path(argv[0]), Path(argv[1]), int(argv[2])
    _cap_memory(limit)
    try:
        from workers.ml.models.errors import ModelRefused
        from workers.ml.models.gguf_convert import convert_into

        try:
            convert_into(source, tmp)
        except ModelRefused as exc:
            print(str(exc).replace("\n", " "), flush=True)
            return REFUSED_EXIT
    except BaseException as exc:
        if _is_memory(exc):
            return MEMORY_EXIT  # the imports themselves may be what ran out
        # transformers' own refusals (an architecture it cannot import, a bad tokenizer): their
        # message, never a traceback
        first = str(exc).strip().splitlines()[:1]
        print(f"conversion failed: {first[0] if first else 'no reason given'}", flush=True)
        return REFUSED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
