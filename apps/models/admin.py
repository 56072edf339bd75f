from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.models import services
from apps.models.models import Adapter, BaseModel, ImageAsset, ModelSource, ModelStatus


class RegisterModelForm(forms.ModelForm):
    """Admins register a local folder or a GGUF file; everything else is read from the files."""

    class Meta:
        model = BaseModel
        fields = ["name", "source", "reference", "config_path", "enabled"]
        help_texts = {
            "reference": "Path on the workers' shared models volume: a Hugging Face folder (text "
            "models) or diffusers folder (image models), a .gguf file, or a single .safetensors "
            "SD/SDXL checkpoint",
            "config_path": "Single-file checkpoints only: a local diffusers folder of the same "
            "family (SD 1.x, 2.x or SDXL) whose configuration and tokenizer diffusers needs "
            "offline",
        }

    def clean(self):
        """Every check registration makes runs here, so a refused file is a form error on its
        field and nothing is written: no row, no audit event, no admin log entry."""
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        try:
            services.model_registration_check(
                source=data.get("source", ""),
                name=data.get("name", ""),
                path=data.get("reference", ""),
                config_path=data.get("config_path", ""),
            )
        except ValidationError as exc:
            add_service_errors(self, exc, {"path": "reference"})
        return data


def add_service_errors(form: forms.BaseForm, exc: ValidationError, fields: dict[str, str]) -> None:
    """A service's ValidationError as form errors, each on the form field it is about."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for key, errors in exc.message_dict.items():
        field = fields.get(key, key)
        form.add_error(field if field in form.fields else None, errors)


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "source",
        "status",
        "architecture",
        "parameters_display",
        "context_length",
        "license",
        "enabled",
    )
    list_filter = ("source", "status", "kind", "enabled")
    search_fields = ("name", "reference", "architecture")
    actions = ["reset_preparation"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = RegisterModelForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return [
            f.name for f in BaseModel._meta.fields if f.name not in ("name", "enabled", "license")
        ]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # the form's clean() ran the same checks: a refusal never gets this far
        created = services.model_register(
            source=obj.source,
            name=obj.name,
            path=obj.reference,
            config_path=obj.config_path,
            actor=request.user,
            request=request,
        )
        obj.pk = created.pk

    @admin.action(description="Prepare again on next use (clears an error)")
    def reset_preparation(self, request, queryset):
        n = queryset.exclude(source=ModelSource.FOLDER).update(status=ModelStatus.PENDING, error="")
        self.message_user(request, f"{n} model(s) will be prepared again on first use")


@admin.register(Adapter)
class AdapterAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "project",
        "base_model",
        "dataset_version",
        "job",
        "created_by",
        "created_at",
    )
    list_filter = ("project", "base_model")
    search_fields = ("name",)
    readonly_fields = [f.name for f in Adapter._meta.fields]

    def has_add_permission(self, request):
        return False


class RegisterAssetForm(forms.ModelForm):
    class Meta:
        model = ImageAsset
        fields = ["kind", "name", "path", "license", "enabled"]
        help_texts = {
            "name": "What prompts use: <lora:NAME:0.8> for LoRAs, the bare NAME for embeddings",
            "path": "On the workers' shared models volume: a .safetensors file (LoRA, embedding, "
            "ESRGAN-family upscaler) or a diffusers folder (ControlNet)",
        }

    def clean(self):
        """The asset checks run here: a refused file is a form error and nothing is written."""
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        try:
            services.asset_registration_check(
                kind=data.get("kind", ""), name=data.get("name", ""), path=data.get("path", "")
            )
        except ValidationError as exc:
            add_service_errors(self, exc, {})
        return data


@admin.register(ImageAsset)
class ImageAssetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "family", "short_hash", "license", "enabled", "created_at")
    list_filter = ("kind", "family", "enabled")
    search_fields = ("name", "path")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = RegisterAssetForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return [f.name for f in ImageAsset._meta.fields if f.name not in ("enabled", "license")]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # the form's clean() ran the same checks: a refusal never gets this far
        created = services.asset_register(
            kind=obj.kind,
            name=obj.name,
            path=obj.path,
            license=obj.license,
            actor=request.user,
            request=request,
        )
        obj.pk = created.pk
