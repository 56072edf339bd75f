import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.models.services import ensure_builtin_rows
from apps.projects.models import Membership, Project, Role

DEMO_USERS = [
    # username, role in the demo project, platform admin?
    ("admin", Role.ADMIN, True),
    ("member", Role.MEMBER, False),
    ("reviewer", Role.REVIEWER, False),
]


def logins_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-logins.txt"


class Command(BaseCommand):
    help = "Create (once) the demo project and its three demo users, and print their logins."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        path = logins_file()
        passwords = {}
        if path.exists():
            for line in path.read_text().splitlines():
                user, _, password = line.partition(" ")
                passwords[user] = password
        fixed = os.environ.get("ATELIER_DEMO_PASSWORD")
        project = Project.objects.filter(name="Demo project").first()
        if project is None:
            project = Project.objects.create(
                name="Demo project",
                description="A place to try Atelier: members start jobs below; reviewers review what they produce.",
            )
        for username, role, staff in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                password = fixed or passwords.get(username) or secrets.token_urlsafe(9)
                user = User.objects.create_user(
                    username=username,
                    email=f"{username}@example.com",
                    password=password,
                    is_staff=staff,
                    is_superuser=staff,
                )
                passwords[username] = password
            Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
        ensure_builtin_rows()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{u} {p}\n" for u, p in passwords.items()))
        path.chmod(0o600)
        self.stdout.write(f"Demo logins (stored in {path}):")
        for username, role, staff in DEMO_USERS:
            what = "platform admin" if staff else role.label.lower()
            self.stdout.write(
                f"  {username:<9} {passwords.get(username, '(changed by you)'):<16} {what}"
            )
