"""Job kinds of model craft (issue 18): distillation, quantization and the bias probe
(text_kinds), image LoRA and textual-inversion training (image_kinds)."""

from apps.craft import image_kinds, text_kinds  # noqa: F401
