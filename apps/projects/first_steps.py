"""What a new project, and a new user, should do first: the dashboard's three steps, ticked as
the project gets there, and whether the project list should say where to begin.

Read through the project's reverse relations (datasets, adapters, outputs): the apps that own
those rows sit above this one in the import layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apps.projects.models import Project

# A user in this many projects or fewer still sees where to begin on the project list.
FEW_PROJECTS = 1


@dataclass(frozen=True)
class Step:
    key: str  # "dataset", "finetune", "generate": the template words and links each
    done: bool


def project_steps(project: Project) -> list[Step] | None:
    """The three first steps and which are done; None once all are (the guide is gone)."""
    steps = [
        Step("dataset", project.datasets.exists()),
        # An adapter is what a finished fine-tune leaves; an image LoRA trained here counts too.
        Step("finetune", project.adapters.exists() or project.image_assets.exists()),
        Step("generate", project.outputs.exists()),
    ]
    return None if all(step.done for step in steps) else steps


def demo_logins_file() -> Path | None:
    """Where `manage.py seed_demo` (run by `make run`) keeps the demo logins, if it has run."""
    path = Path(settings.VAR_DIR) / "demo-logins.txt"
    return path if path.exists() else None
