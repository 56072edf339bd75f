"""Base models: validate local folders, build the built-in models, convert GGUF, load safely.

Pure ML code (no Django, no Celery). The rules from DESIGN.md "Models and weights":

- Only safetensors weights are loaded; a folder holding any pickle-capable weight file
  (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`, ... or anything that *is* a pickle) is refused with
  a message naming the file (one policy for every loader: workers.common.safety). GGUF files are
  accepted for import only: `convert_gguf` turns one into a safetensors folder once.
- `trust_remote_code` is never enabled: a config that asks for custom code (`auto_map`) is
  refused before transformers sees it.
- The hub is used only when a hub id is configured and the network is allowed
  (`HF_HUB_OFFLINE` unset or 0); offline, `resolve_hub_id` refuses without touching the network.

Modules: errors (what is raised), refusals (what is never loaded), inspection (`inspect_folder`),
lora_targets, markers (completion markers), tiny_llama and smollm2 (the built-in models),
gguf_convert, hub, loading (`load_causal_lm`, devices, quantization).

Heavy imports (torch, transformers, tokenizers, gguf) happen inside the functions that need
them, so importing this package is cheap and safe before a fork.
"""

from workers.ml.models.errors import DeviceUnavailable, ModelRefused, QuantizationUnavailable
from workers.ml.models.gguf_convert import convert_gguf, export_llama_gguf
from workers.ml.models.hub import hub_allowed, resolve_hub_id
from workers.ml.models.inspection import (
    ModelInfo,
    inspect_folder,
    read_license,
    read_safetensors_header,
)
from workers.ml.models.loading import (
    QUANTIZATIONS,
    load_causal_lm,
    quantize_int8_dynamic,
    resolve_device,
    resolve_dtype,
)
from workers.ml.models.lora_targets import detect_lora_targets
from workers.ml.models.markers import MARKER, read_marker
from workers.ml.models.smollm2 import ensure_smollm2, smollm2_gguf_path, smollm2_version
from workers.ml.models.tiny_llama import build_tiny_llama

__all__ = [
    "MARKER",
    "QUANTIZATIONS",
    "DeviceUnavailable",
    "ModelInfo",
    "ModelRefused",
    "QuantizationUnavailable",
    "build_tiny_llama",
    "convert_gguf",
    "detect_lora_targets",
    "ensure_smollm2",
    "export_llama_gguf",
    "hub_allowed",
    "inspect_folder",
    "load_causal_lm",
    "quantize_int8_dynamic",
    "read_license",
    "read_marker",
    "read_safetensors_header",
    "resolve_device",
    "resolve_dtype",
    "resolve_hub_id",
    "smollm2_gguf_path",
    "smollm2_version",
]
