"""Model craft pages: text (distillation, quantization, bias probe) and image (LoRA, textual
inversion) training, each in its own module."""

from apps.craft import image_urls, text_urls

app_name = "craft"
urlpatterns = [*text_urls.urlpatterns, *image_urls.urlpatterns]
