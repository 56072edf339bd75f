"""People (platform admins: accounts, invitations, resets, deactivation) and a user's own
password: changed on its page, or set through a link an admin handed out."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import selectors, services
from apps.accounts.forms import PersonCreateForm
from apps.accounts.tokens import link_lifetime_hours, password_links


@login_required
@require_http_methods(["GET", "POST"])
def people(request: HttpRequest) -> HttpResponse:
    """The accounts of the installation, and the form that adds one."""
    selectors.platform_admin_check(user=request.user)
    form = PersonCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, link = services.user_create(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"] or None,
                actor=request.user,
                request=request,
            )
        except ValidationError as exc:
            for field, msgs in exc.message_dict.items():
                for msg in msgs:
                    form.add_error(field if field in form.fields else None, msg)
        else:
            if link is None:
                messages.success(request, _("Created %(name)s.") % {"name": user.get_username()})
                return redirect("accounts:people")
            return _link_page(request, user=user, path=link, purpose="invite")
    return render(
        request,
        "accounts/people.html",
        {"people": selectors.people(), "form": form},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def person_action(request: HttpRequest, user_id: int) -> HttpResponse:
    """One admin action on one account: reset, invite again, deactivate, reactivate."""
    selectors.platform_admin_check(user=request.user)
    user = selectors.person(user_id=user_id)
    action = request.POST.get("action")
    name = user.get_username()
    try:
        if action == "reset":
            path = services.password_reset_issue(user=user, actor=request.user, request=request)
            return _link_page(request, user=user, path=path, purpose="reset")
        if action == "invite":
            path = services.invitation_reissue(user=user, actor=request.user, request=request)
            return _link_page(request, user=user, path=path, purpose="invite")
        if action in ("deactivate", "activate"):
            active = action == "activate"
            services.user_set_active(user=user, active=active, actor=request.user, request=request)
            done = (
                _("%(name)s can log in again.") if active else _("%(name)s can no longer log in.")
            )
            messages.success(request, done % {"name": name})
        else:
            messages.error(request, _("Unknown action"))
    except ValidationError as exc:
        for msg in exc.messages:
            messages.error(request, msg)
    return redirect("accounts:people")


def _link_page(request: HttpRequest, *, user, path: str, purpose: str) -> HttpResponse:
    """The link, shown once: it is not stored anywhere, so a lost one is replaced, not looked up."""
    return render(
        request,
        "accounts/person_link.html",
        {
            "person": user,
            "link": request.build_absolute_uri(path),
            "purpose": purpose,
            "hours": link_lifetime_hours(),
        },
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """A user's own password, in the site's frame; the validators apply and sessions elsewhere end."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("projects:list")

    def form_valid(self, form):
        response = super().form_valid(form)  # keeps this session (update_session_auth_hash)
        services.password_changed_record(user=form.user, request=self.request, by_link=False)
        messages.success(self.request, _("Your password was changed."))
        return response


class PasswordSetView(auth_views.PasswordResetConfirmView):
    """The page an invitation or reset link opens: choose a password, then log in with it.

    Django's reset view moves the token from the address into the session before showing the
    form, so the token does not leak through the Referer of anything the page loads.
    """

    template_name = "accounts/password_set.html"
    token_generator = password_links
    reset_url_token = "choose"  # noqa: S105  (a URL segment, not a secret)
    success_url = reverse_lazy("accounts:login")
    post_reset_login = False  # the first login goes through the login page and its throttle

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def form_valid(self, form):
        response = super().form_valid(form)
        services.password_changed_record(user=form.user, request=self.request, by_link=True)
        messages.success(self.request, _("Your password is set. Log in with it now."))
        return response
