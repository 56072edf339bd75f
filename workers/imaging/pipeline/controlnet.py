"""ControlNet: the control image (OpenCV Canny edges, or the image as it is) and the
ControlNet model, given loaded or as a folder of safetensors weights (kept warm, two at most)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from workers.imaging.pipeline.loading import align_weights, refuse_pickle
from workers.imaging.pipeline.request import ControlNetSpec, InvalidRequest


def canny_image(image: Any, low: int = 100, high: int = 200, size: tuple[int, int] | None = None):
    """OpenCV Canny edges of an image as a 3-channel PIL image (white edges on black)."""
    import cv2
    import numpy as np
    from PIL import Image

    source = image.convert("RGB")
    if size is not None and source.size != tuple(size):
        source = source.resize(tuple(size), Image.Resampling.LANCZOS)
    gray = cv2.cvtColor(np.asarray(source), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def control_image(spec: ControlNetSpec, size: tuple[int, int]):
    """The spec's control image at ``size``: its Canny edges, or the image itself."""
    from PIL import Image

    if spec.type == "canny":
        return canny_image(spec.image, spec.low, spec.high, size)
    image = spec.image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


# ControlNets given as folders: the two most recently used stay loaded (the platform's model
# cache can pass a loaded ControlNetModel instead).
_controlnet_cache: OrderedDict[str, Any] = OrderedDict()
_controlnet_lock = threading.Lock()
CONTROLNET_CACHE_SIZE = 2


def controlnet_model(spec: ControlNetSpec, pipe: Any):
    """The spec's ControlNet: as given when loaded, else loaded from its folder (cached)."""
    model = spec.model
    if model is None:
        raise InvalidRequest("controlnet needs a model (a ControlNetModel or a folder)")
    if not isinstance(model, str | os.PathLike):
        return model
    from diffusers import ControlNetModel

    folder = Path(model).expanduser()
    refuse_pickle(folder)
    key = f"{folder.resolve()}|{pipe.device}|{pipe.unet.dtype}"
    with _controlnet_lock:
        if key not in _controlnet_cache:
            loaded = ControlNetModel.from_pretrained(
                str(folder), use_safetensors=True, dtype=pipe.unet.dtype
            )
            _controlnet_cache[key] = loaded.to(pipe.device)
            align_weights(loaded)
            while len(_controlnet_cache) > CONTROLNET_CACHE_SIZE:
                _controlnet_cache.popitem(last=False)
        _controlnet_cache.move_to_end(key)
        return _controlnet_cache[key]
