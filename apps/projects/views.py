from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.jobs import selectors as job_selectors
from apps.projects import selectors, services
from apps.projects.first_steps import FEW_PROJECTS, demo_logins_file, project_steps
from apps.projects.forms import MemberAddForm, ProjectCreateForm, ProjectSettingsForm
from apps.projects.models import Membership, Project, Role


def _validation_messages(error: ValidationError) -> list[str]:
    if hasattr(error, "message_dict"):
        return [m for msgs in error.message_dict.values() for m in msgs]
    return list(error.messages)


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request: HttpRequest) -> HttpResponse:
    from apps.quotas.services import check_may_create_project

    form = ProjectCreateForm(request.POST or None)
    try:
        check_may_create_project(request.user)
        may_create = True
    except PermissionDenied as exc:
        may_create, refusal = False, str(exc)
    if request.method == "POST" and not may_create:
        form.is_valid()
        form.add_error(None, refusal)
        status = 403
    elif request.method == "POST" and form.is_valid():
        project = services.project_create(
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            created_by=request.user,
            request=request,
        )
        return redirect(project)
    else:
        status = 400 if form.errors else 200
    memberships = list(selectors.memberships_for_user(user=request.user))
    return render(
        request,
        "projects/project_list.html",
        {
            "memberships": memberships,
            "form": form,
            "may_create": may_create,
            "first_run": len(memberships) <= FEW_PROJECTS,
            "launches_somewhere": request.user.is_superuser
            or any(selectors.role_can(m.role, "launch_job") for m in memberships),
            "demo_logins": demo_logins_file(),
        },
        status=status,
    )


@login_required
def dashboard(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_access(user=request.user, project_id=project_id)
    context = job_selectors.dashboard_context(access=access)
    context["first_steps"] = project_steps(access.project)
    return render(request, "projects/dashboard.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, project_id: int) -> HttpResponse:
    need = "manage_members" if request.method == "POST" else "view"
    access = selectors.project_access(user=request.user, project_id=project_id, need=need)
    project = access.project
    add_form = MemberAddForm(request.POST or None)
    if request.method == "POST" and add_form.is_valid():
        username, role = add_form.cleaned_data["username"].strip(), add_form.cleaned_data["role"]
        try:
            services.membership_add(
                project=project, username=username, role=role, actor=request.user, request=request
            )
        except services.UnknownUsername:
            pass  # answered exactly like an add: the form must not reveal which usernames exist
        except ValidationError as exc:
            for field, msgs in exc.message_dict.items():
                for msg in msgs:
                    add_form.add_error(field if field in add_form.fields else None, msg)
        if not add_form.errors:
            messages.success(
                request,
                f"If a user named {username} exists, they now have the {Role(role).label} role",
            )
            return redirect("projects:members", project.pk)
    return render(
        request,
        "projects/members.html",
        {
            "project": project,
            "membership": access,
            "memberships": selectors.project_memberships(project=project),
            "is_admin": access.can("manage_members"),
            "add_form": add_form,
            "roles": Role.choices,
        },
        status=400 if add_form.errors else 200,
    )


@login_required
@require_POST
def member_update(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    access = selectors.project_access(
        user=request.user, project_id=project_id, need="manage_members"
    )
    membership = get_object_or_404(Membership, pk=membership_id, project=access.project)
    action = request.POST.get("action")
    try:
        if action == "role":
            services.membership_change_role(
                membership=membership,
                role=request.POST.get("role", ""),
                actor=request.user,
                request=request,
            )
            messages.success(
                request, f"{membership.user.username} is now {membership.get_role_display()}"
            )
        elif action == "remove":
            username = membership.user.username
            services.membership_remove(membership=membership, actor=request.user, request=request)
            messages.success(request, f"Removed {username}")
        else:
            messages.error(request, "Unknown action")
    except ValidationError as exc:
        for msg in _validation_messages(exc):
            messages.error(request, msg)
    return redirect("projects:members", access.project.pk)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    access = selectors.project_access(
        user=request.user, project_id=project_id, need="manage_members"
    )
    project = access.project
    form = ProjectSettingsForm(request.POST or None, instance=Project.objects.get(pk=project.pk))
    if request.method == "POST" and form.is_valid():
        services.project_update_settings(
            project=project, actor=request.user, request=request, **form.cleaned_data
        )
        messages.success(request, "Settings saved")
        return redirect("projects:settings", project.pk)
    return render(
        request,
        "projects/settings.html",
        {"project": project, "membership": access, "form": form},
        status=400 if form.errors else 200,
    )
