"""The API tokens page: make (shown once), list and revoke your own personal tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from apps.api import tokens
from apps.projects import selectors as project_selectors

EXPIRY_CHOICES = [("", gettext_lazy("Never")), ("30", "30"), ("90", "90"), ("365", "365")]


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    memberships = list(project_selectors.memberships_for_user(user=request.user))
    new_token = None
    error = ""
    if request.method == "POST":
        project_id = request.POST.get("project", "")
        expires = request.POST.get("expires_in_days", "")
        if not project_id.isdecimal():
            error = _("Choose the project the token works in.")
        elif expires and not expires.isdecimal():
            error = _("Expiry must be a number of days.")
        else:
            try:
                token, new_token = tokens.token_create(
                    user=request.user,
                    name=request.POST.get("name", ""),
                    project_id=int(project_id),
                    expires_in_days=int(expires) if expires else None,
                    request=request,
                )
            except Http404:
                error = _("You are not a member of that project.")
    base_url = request.build_absolute_uri("/").rstrip("/")
    return render(
        request,
        "api/tokens.html",
        {
            "tokens": tokens.tokens_of(user=request.user),
            "memberships": memberships,
            "new_token": new_token,
            "error": error,
            "expiry_choices": EXPIRY_CHOICES,
            "base_url": base_url,
            "docs_url": reverse("api:openapi-view"),
        },
        status=400 if error else 200,
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not tokens.token_revoke(user=request.user, token_id=token_id, request=request):
        raise Http404("No such token")
    messages.success(request, _("Token revoked: it no longer works."))
    return redirect("tokens:list")
