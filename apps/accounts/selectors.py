"""Reads for the People pages: who may use them, and the accounts they list."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404


def is_platform_admin(user) -> bool:
    """Platform admins run the installation: staff or superusers, as the usage and audit pages."""
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def platform_admin_check(*, user) -> None:
    """Not a project page: everyone else is told it does not exist."""
    if not is_platform_admin(user):
        raise Http404("No such page")


def people() -> QuerySet:
    """Every account, active ones first, by username."""
    return get_user_model().objects.order_by("-is_active", "username")


def person(*, user_id: int):
    try:
        return get_user_model().objects.get(pk=user_id)
    except (get_user_model().DoesNotExist, ValueError, TypeError):
        raise Http404("No such user") from None
