"""Keep loaded models warm: a thread-safe, memory-bounded LRU of loaded objects.

Keys are `(path, adapter, quantization, device)` tuples (any hashable works). Sizes are
estimated from the tensors an object holds (parameters, buffers and packed quantized weights ×
element size). When the total goes over budget the least recently used entries are dropped (and
`torch.cuda.empty_cache()` is called if one of them lived on a GPU). An entry larger than the
whole budget is still returned and kept, alone, until the next load evicts it.

Pure code: no Django, no Celery. torch is imported lazily (nothing touches CUDA at import, so a
prefork pool can fork safely).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_FRACTION = 0.6
ENV_BUDGET = "ATELIER_MODEL_CACHE_BYTES"


class ModelKey(NamedTuple):
    path: str
    adapter: str | None = None
    quantization: str | None = None
    device: str = "cpu"


@dataclass
class _Entry:
    value: Any
    nbytes: int
    on_cuda: bool
    loaded_at: float
    hits: int = 0
    load_seconds: float = 0.0


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    load_seconds: float = 0.0
    evicted: list = field(default_factory=list)


def _tensors_of(obj: Any, seen: set[int], depth: int = 0):
    """Yield the distinct tensors an object holds (modules, containers, quantized modules)."""
    import torch

    if depth > 4 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        try:
            state = obj.state_dict(keep_vars=True)
        except Exception:  # a module whose state_dict cannot be built: count parameters only
            state = dict(obj.named_parameters())
            state.update(dict(obj.named_buffers()))
        for value in state.values():
            yield from _tensors_of(value, seen, depth + 1)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors_of(value, seen, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _tensors_of(value, seen, depth + 1)
    elif hasattr(obj, "model") and isinstance(getattr(obj, "model", None), torch.nn.Module):
        yield from _tensors_of(obj.model, seen, depth + 1)  # e.g. a pipeline-like wrapper


def _tensor_nbytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()  # quantized tensors: 1 byte per qint8


def estimate_bytes(obj: Any) -> tuple[int, bool]:
    """(bytes, on_cuda): parameters × element size of every distinct tensor held by `obj`.

    Packed int8 weights of dynamically quantized Linear layers are counted too.
    """
    total, on_cuda = 0, False
    storages: set[tuple[int | str, ...]] = set()
    for tensor in _tensors_of(obj, set()):
        key: tuple[int | str, ...]
        try:
            key = (tensor.device.type, tensor.data_ptr(), tensor.numel())
        except RuntimeError:
            key = (id(tensor),)
        if key in storages:
            continue  # tied weights are counted once
        storages.add(key)
        total += _tensor_nbytes(tensor)
        on_cuda = on_cuda or tensor.device.type == "cuda"
    return total, on_cuda


class ModelCache:
    """LRU of loaded objects under a byte budget; `get_or_load` loads each key once."""

    def __init__(self, max_bytes: int, *, sizer: Callable[[Any], tuple[int, bool]] | None = None):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = int(max_bytes)
        self._sizer = sizer or estimate_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._counters = _Counters()

    # -- reads

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def _hit(self, key: Hashable) -> Any:
        entry = self._entries[key]
        self._entries.move_to_end(key)
        entry.hits += 1
        self._counters.hits += 1
        return entry.value

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key in self._entries:
                return self._hit(key)
        return default

    # -- loads

    def get_or_load(
        self,
        key: Hashable,
        loader: Callable[[], Any],
        *,
        expected_bytes: int | None = None,
    ) -> tuple[Any, bool]:
        """(object, loaded): the cached object, or `loader()`'s result stored under `key`.

        Concurrent callers for one key wait for a single load. `expected_bytes`, when known,
        evicts before loading so the old and new models are not both resident.
        """
        with self._lock:
            if key in self._entries:
                return self._hit(key), False
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:
                    return self._hit(key), False
                self._counters.misses += 1
                evicted = self._evict_locked(self.max_bytes - (expected_bytes or 0))
            self._release(evicted)
            started = time.perf_counter()
            try:
                value = loader()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            seconds = time.perf_counter() - started
            nbytes, on_cuda = self._sizer(value)
            with self._lock:
                self._entries[key] = _Entry(value, int(nbytes), on_cuda, time.time())
                self._entries[key].load_seconds = seconds
                self._counters.load_seconds += seconds
                evicted = self._evict_locked(self.max_bytes, keep=key)
            self._release(evicted)
            return value, True

    # -- eviction

    def _evict_locked(self, budget: int, keep: Hashable | None = None) -> list[_Entry]:
        evicted = []
        used = sum(e.nbytes for e in self._entries.values())
        for key in list(self._entries):
            if used <= budget:
                break
            if key == keep:
                continue
            entry = self._entries.pop(key)
            used -= entry.nbytes
            evicted.append(entry)
            self._counters.evictions += 1
            self._counters.evicted.append(key)
            del self._counters.evicted[:-20]
        return evicted

    @staticmethod
    def _release(evicted: list[_Entry]) -> None:
        if not evicted:
            return
        on_cuda = any(e.on_cuda for e in evicted)
        for entry in evicted:
            entry.value = None
        evicted.clear()
        if on_cuda:
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def evict(self, key: Hashable) -> bool:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._counters.evictions += 1
        if entry is None:
            return False
        self._release([entry])
        return True

    def clear(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        self._release(entries)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "used_bytes": sum(e.nbytes for e in self._entries.values()),
                "max_bytes": self.max_bytes,
                "hits": self._counters.hits,
                "misses": self._counters.misses,
                "evictions": self._counters.evictions,
                "load_seconds": round(self._counters.load_seconds, 3),
                "recently_evicted": [repr(k) for k in self._counters.evicted],
                "keys": [
                    {
                        "key": repr(k),
                        "bytes": e.nbytes,
                        "hits": e.hits,
                        "load_seconds": round(e.load_seconds, 3),
                        "on_cuda": e.on_cuda,
                    }
                    for k, e in self._entries.items()  # least recently used first
                ],
            }


# ---------------------------------------------------------------- the default cache


def available_ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3


def parse_bytes(text: str) -> int:
    """'123', '512M', '6G', '1.5GiB' → bytes."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    for suffix, factor in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if value.endswith(suffix):
            value, scale = value[:-1], factor
            break
    number = float(value)
    if number <= 0:
        raise ValueError(f"{ENV_BUDGET} must be positive, got {text!r}")
    return int(number * scale)


def default_budget_bytes() -> int:
    """ATELIER_MODEL_CACHE_BYTES, else 60% of GPU memory (CUDA workers) or available RAM."""
    raw = os.environ.get(ENV_BUDGET, "").strip()
    if raw:
        return parse_bytes(raw)
    try:
        import torch

        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
            return int(total * DEFAULT_FRACTION)
    except Exception:  # no torch, or a broken driver: fall back to RAM
        pass
    return int(available_ram_bytes() * DEFAULT_FRACTION)


_default: ModelCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ModelCache:
    """The process-wide cache, created on first use (not at import: see the fork note above)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelCache(default_budget_bytes())
        return _default
