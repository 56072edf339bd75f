"""Inputs of image generation that are not gallery images: inpainting masks and saved styles."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class InpaintMask(models.Model):
    """A mask painted in the browser (or uploaded) for an inpainting job: 8-bit grayscale PNG,
    white = redraw, stored under media by its SHA-256. Not a gallery image: nobody browses masks,
    and a job names one by id (ImageParams.mask_id)."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="inpaint_masks"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sha256 = models.CharField(max_length=64)
    file_path = models.CharField(max_length=300)  # relative to MEDIA_ROOT
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The same mask painted twice is one row (and one file): Generate again re-sends it.
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="inpaint_mask_unique")
        ]

    def __str__(self) -> str:
        return f"mask {self.pk} ({self.width}x{self.height})"


class Style(models.Model):
    """A saved prompt snippet (A1111's "Styles"): its prompt is merged into the user's prompt,
    at its ``{prompt}`` placeholder or appended after a comma; the negative prompt likewise."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="image_styles"
    )
    name = models.CharField(max_length=100)
    prompt = models.TextField(blank=True, max_length=8000)
    negative_prompt = models.TextField(blank=True, max_length=8000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="image_style_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
