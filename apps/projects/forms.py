from django import forms
from django.utils.translation import gettext_lazy as _

from apps.projects.models import Project, Role


class ProjectCreateForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class MemberAddForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)


class ProjectSettingsForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "description", "require_dataset_approval", "max_concurrent_jobs"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
