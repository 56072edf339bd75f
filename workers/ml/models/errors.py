"""What the model code raises when it will not (or cannot) load something."""

from __future__ import annotations

__all__ = ["DeviceUnavailable", "ModelRefused", "QuantizationUnavailable"]


class ModelRefused(Exception):
    """A model folder or file that the platform will not load; the message says what and why."""


class DeviceUnavailable(ValueError):
    """The request needs hardware (or a package for it) that this worker does not have."""


class QuantizationUnavailable(DeviceUnavailable):
    """The requested quantization needs hardware or a package this worker does not have."""
