from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ModelSource(models.TextChoices):
    BUILTIN = "builtin", _("Built in")
    FOLDER = "folder", _("Local folder")
    SINGLE_FILE = "single_file", _("Single .safetensors checkpoint")
    GGUF = "gguf", _("GGUF file (converted once)")
    HUB = "hub", _("Hub id (only when the network allows)")


class ModelStatus(models.TextChoices):
    PENDING = "pending", _("Not prepared yet")
    READY = "ready", _("Ready")
    ERROR = "error", _("Error")


class BaseModelQuerySet(models.QuerySet):
    def usable_by(self, project_id: int | None) -> BaseModelQuerySet:
        """The platform's models and those the project made itself (model craft)."""
        return self.filter(models.Q(project__isnull=True) | models.Q(project_id=project_id))


class BaseModel(models.Model):
    """A base model: registered by an admin (platform-wide, usable by every project), or made by
    a project's model-craft job (distilled, quantized: `project` set, usable only there)."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(
        max_length=16, default="text", choices=[("text", "Text"), ("image", "Image")]
    )
    source = models.CharField(max_length=16, choices=ModelSource.choices)
    # Built-in key (smollm2-135m-instruct, tiny-llama), GGUF file path or hub id, by source.
    reference = models.CharField(max_length=500, blank=True)
    # The prepared safetensors folder the workers load (absolute path on the shared models volume).
    path = models.CharField(max_length=500, blank=True)
    # Single-file image checkpoints: a local diffusers folder of the same family whose configs
    # (scheduler, tokenizer, component shapes) diffusers' from_single_file needs when offline.
    config_path = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=16, choices=ModelStatus.choices, default=ModelStatus.PENDING
    )
    error = models.TextField(blank=True)
    architecture = models.CharField(max_length=100, blank=True)
    model_type = models.CharField(max_length=64, blank=True)
    parameters = models.PositiveBigIntegerField(default=0)
    context_length = models.PositiveIntegerField(default=0)
    license = models.CharField(max_length=100, blank=True)
    default_targets = models.JSONField(default=list, blank=True)
    has_chat_template = models.BooleanField(default=False)
    info = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # None: the platform's (admins, built-ins). A project: made by its model-craft job from its
    # data, offered and accepted only in that project (usable_by).
    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="own_models",
    )

    objects = BaseModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == ModelStatus.READY and bool(self.path)

    @property
    def note(self) -> str:
        """What the model is, in the active language: a built-in's note is stored in English and
        is a catalogue entry; an admin's note is shown as they wrote it."""
        text = str(self.info.get("note") or "")
        return gettext(text) if text and self.source == ModelSource.BUILTIN else text

    @property
    def parameters_display(self) -> str:
        n = self.parameters
        for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if n >= size:
                return f"{n / size:.1f}{unit}"
        return str(n)


class AdapterKind(models.TextChoices):
    SFT = "sft", _("Supervised fine-tune (LoRA)")
    DPO = "dpo", _("Preference-tuned (DPO)")
    REWARD = "reward", _("Reward model")
    GRPO = "grpo", _("Policy-optimised (GRPO)")


class Adapter(models.Model):
    """A LoRA adapter produced by a fine-tune, stored in PEFT format under media.

    `kind`: what it was trained for (a reward model's adapter sits on a sequence-classification
    head and scores texts; it is not offered for generation). `parent`: the adapter this one
    started from (a DPO run on top of an SFT adapter). `lineage`: what the adapter was trained
    from, written once when it is published: {"base_model": {id, name, sha256?}, "dataset_versions":
    [{id, dataset, number, sha256, rows}], "parent": {id, name} | None, "review": {"outputs":
    n, "approved": n, "rejected": n, "decided_until": iso} | None, "job": id}.
    """

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="adapters"
    )
    name = models.CharField(max_length=200)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="adapters")
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="adapter"
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="adapters",
    )
    # Relative to MEDIA_ROOT: adapters/<project>/<job>/adapter (PEFT folder) and adapter.zip beside it.
    storage_path = models.CharField(max_length=500)
    merged_path = models.CharField(max_length=500, blank=True)
    template = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    kind = models.CharField(max_length=16, choices=AdapterKind.choices, default=AdapterKind.SFT)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    lineage = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class AssetKind(models.TextChoices):
    LORA = "lora", _("Image LoRA")
    EMBEDDING = "embedding", _("Textual-inversion embedding")
    CONTROLNET = "controlnet", _("ControlNet")
    UPSCALER = "upscaler", _("Upscaler (ESRGAN family)")


class ImageAssetQuerySet(models.QuerySet):
    def usable_by(self, project_id: int | None) -> ImageAssetQuerySet:
        """The platform's assets and those the project trained itself."""
        return self.filter(models.Q(project__isnull=True) | models.Q(project_id=project_id))


class ImageAsset(models.Model):
    """Extra networks for image models, registered by admins, usable by every project.

    LoRAs are used with ``<lora:name:weight>`` in a prompt and embeddings by writing their name,
    as in A1111; ControlNets and upscalers are chosen on the image form and the gallery.
    """

    # None: registered by an admin, usable in every project. A project: trained there (model
    # craft), usable only in that project's image jobs (usable_by).
    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="image_assets",
    )
    kind = models.CharField(max_length=16, choices=AssetKind.choices)
    # The name prompts use: letters, digits, '_', '-', '.' (no spaces or ':').
    name = models.CharField(max_length=100)
    # A .safetensors file (LoRA, embedding, upscaler) or a diffusers folder (ControlNet).
    path = models.CharField(max_length=500)
    family = models.CharField(max_length=16, blank=True)  # "sd", "sdxl" or "" (any)
    sha256 = models.CharField(max_length=64, blank=True)
    info = models.JSONField(default=dict, blank=True)
    license = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ImageAssetQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="image_asset_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"

    @property
    def short_hash(self) -> str:
        """A1111 writes the first 10 (LoRA, model) or 12 (embedding) hex digits of the SHA-256."""
        return self.sha256[:12] if self.kind == AssetKind.EMBEDDING else self.sha256[:10]
