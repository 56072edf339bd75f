"""The pipeline's execution device, found once instead of on every use.

diffusers' ``DiffusionPipeline._execution_device`` walks every module of every component
looking for offloading hooks each time it is read: ~1.7 ms for the tiny test pipeline, several
ms for SD 1.5 and more for SDXL, whose ``__call__`` reads it six times. A loaded pipeline in the
worker's cache does not move, so :func:`pin_execution_device` gives it (and each ``from_pipe``
variant) a class whose property answers from a cached value, found by diffusers' own code the
first time. Moving the pipeline (``to``) or changing its offloading forgets the value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_PIN = "_atelier_execution_device"
_classes: dict[type, type] = {}
_lock = threading.Lock()
# Methods after which the execution device may differ: the cached value is dropped first.
_MOVING = (
    "to",
    "enable_model_cpu_offload",
    "enable_sequential_cpu_offload",
    "remove_all_hooks",
    "reset_device_map",
)


def _pinned_class(cls: type) -> type:
    with _lock:
        found = _classes.get(cls)
        if found is not None:
            return found
        original = cls.__dict__.get("_execution_device") or next(
            k.__dict__["_execution_device"]
            for k in cls.__mro__
            if "_execution_device" in k.__dict__
        )
        find_device: Callable[[Any], Any] = original.fget  # diffusers' module walk

        def _execution_device(self):
            value = self.__dict__.get(_PIN)
            if value is None:
                value = find_device(self)
                self.__dict__[_PIN] = value
            return value

        def forgetting(name: str):
            method = getattr(cls, name)

            def wrapper(self, *args, **kwargs):
                self.__dict__.pop(_PIN, None)
                try:
                    return method(self, *args, **kwargs)
                finally:
                    self.__dict__.pop(_PIN, None)

            wrapper.__name__ = name
            wrapper.__doc__ = method.__doc__
            return wrapper

        namespace: dict[str, Any] = {
            "__module__": cls.__module__,
            "__doc__": cls.__doc__,
            "_execution_device": property(_execution_device, doc=original.__doc__),
        }
        for name in _MOVING:
            if hasattr(cls, name):
                namespace[name] = forgetting(name)
        # Same name: diffusers writes type(pipe).__name__ as `_class_name` when saving.
        found = type(cls.__name__, (cls,), namespace)
        found.__qualname__ = cls.__qualname__
        _classes[cls] = found
        _classes[found] = found
        return found


def pin_execution_device(pipe: Any) -> Any:
    """Make ``pipe._execution_device`` a cached value (see the module docstring); returns pipe."""
    cls = type(pipe)
    if not isinstance(getattr(cls, "_execution_device", None), property):
        return pipe
    pipe.__class__ = _pinned_class(cls)
    return pipe
