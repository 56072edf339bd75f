"""manage.py apitoken create <username> [--project ID] [--name NAME] [--days N] | list <username>
| revoke <username> <token id>. The token is printed once (only its hash is stored)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from apps.api import tokens
from apps.projects import selectors as project_selectors


class Command(BaseCommand):
    help = "Create, list or revoke a user's personal API tokens."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Make a token and print it (shown once)")
        create.add_argument("username")
        create.add_argument("--project", type=int, help="Project id (default: their first)")
        create.add_argument("--name", default="cli")
        create.add_argument("--days", type=int, default=None, help="Expire after N days")
        listing = sub.add_parser("list", help="List a user's tokens")
        listing.add_argument("username")
        revoke = sub.add_parser("revoke", help="Revoke a token by id")
        revoke.add_argument("username")
        revoke.add_argument("token_id", type=int)

    def _user(self, username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}") from None

    def handle(self, *args, **options):
        user = self._user(options["username"])
        action = options["action"]
        if action == "create":
            project_id = options["project"]
            if project_id is None:
                first = project_selectors.memberships_for_user(user=user).first()
                if first is None:
                    raise CommandError(f"{user.username} belongs to no project: add them first")
                project_id = first.project_id
            try:
                token, raw = tokens.token_create(
                    user=user,
                    name=options["name"],
                    project_id=project_id,
                    expires_in_days=options["days"],
                )
            except Http404:
                raise CommandError(
                    f"{user.username} is not a member of project {project_id}"
                ) from None
            self.stderr.write(
                f"Token {token.pk} ({token.prefix}…) for {user.username} in project "
                f"{token.project.name}; it is shown once:"
            )
            self.stdout.write(raw)
        elif action == "list":
            for t in tokens.tokens_of(user=user):
                state = "revoked" if t.revoked_at else ("active" if t.active else "expired")
                self.stdout.write(f"{t.pk}\t{t.prefix}…\t{t.name}\t{t.project.name}\t{state}")
        else:
            if not tokens.token_revoke(user=user, token_id=options["token_id"]):
                raise CommandError(f"No active token {options['token_id']} of {user.username}")
            self.stdout.write(f"Token {options['token_id']} revoked")
