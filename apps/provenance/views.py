"""Provenance pages: the public verifier (anyone, no login) and a project's batches (members).

What the public pages show, and what they never show, is written in apps/provenance/pages.py.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from apps.projects.selectors import project_access
from apps.provenance import pages
from apps.provenance.models import Mode
from apps.provenance.selectors import project_mode
from apps.provenance.services import provenance_settings_set
from webapp.limits import FORM_OVERHEAD, UPLOADS

VERIFY_TEMPLATE = "provenance/verify.html"


def _verify_limit() -> int:
    """The largest file the verifier takes (webapp/limits.py bounds the body before this)."""
    return UPLOADS["provenance:verify"].limit() - FORM_OVERHEAD


def _verify_page(request: HttpRequest, *, status: int = 200, **context) -> HttpResponse:
    return render(
        request,
        VERIFY_TEMPLATE,
        {"max_upload": _verify_limit(), "outcomes": _outcomes(), **context},
        status=status,
    )


def _outcomes() -> dict[str, str]:
    return {"verified": pages.VERIFIED, "unreachable": pages.UNREACHABLE}


@require_http_methods(["GET", "HEAD", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The verifier's form; a pasted hash goes to its own page, a file is answered here."""
    if request.method != "POST":
        if "sha256" in request.GET:
            return _to_hash_page(request, request.GET.get("sha256"))
        return _verify_page(request)
    upload = request.FILES.get("file")
    if upload is None:
        return _to_hash_page(request, request.POST.get("sha256"))
    if upload.size > _verify_limit():  # the body limit is the real bound; this says it in words
        return _verify_page(
            request, status=413, error=_("This file is larger than the verifier accepts.")
        )
    result = pages.read_upload(upload, size=upload.size)
    if result.document is not None:
        return _document_result(request, result)
    lookup = pages.lookup(result.sha256)
    return _verify_page(request, lookup=lookup, upload=result, filename=upload.name)


def _to_hash_page(request: HttpRequest, text: str | None) -> HttpResponse:
    sha = pages.normalize_sha256(text)
    if sha is None:
        return _verify_page(
            request,
            status=400,
            error=_("A SHA-256 is 64 hexadecimal digits."),
            pasted=(text or "")[:200],
        )
    return redirect("provenance:verify_hash", sha256=sha)


def _document_result(request: HttpRequest, upload: pages.Upload) -> HttpResponse:
    """A proof document the visitor brought: checked as written, against the chain now, and
    only "verified" when this instance's signer recorded its root."""
    assert upload.document is not None
    check = pages.check_visitor_document(upload.document)
    return _verify_page(request, document=upload.document, document_check=check, upload=upload)


@require_safe
def verify_hash(request: HttpRequest, sha256: str) -> HttpResponse:
    sha = pages.normalize_sha256(sha256)
    if sha is None:
        raise Http404("Not a SHA-256")
    if sha != sha256:
        return redirect("provenance:verify_hash", sha256=sha)
    return _verify_page(request, lookup=pages.lookup(sha))


@require_safe
def proof_download(request: HttpRequest, sha256: str) -> HttpResponse:
    """The proof document of a final record, as a file (`python -m workers.chain.verify`)."""
    sha = pages.normalize_sha256(sha256)
    document = pages.proof_document_for(sha) if sha else None
    if document is None:
        raise Http404("No final record of this SHA-256")
    response = HttpResponse(
        json.dumps(document, indent=2) + "\n", content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="atelier-proof-{sha[:16]}.json"'
    return response


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def project_provenance(request: HttpRequest, project_id: int) -> HttpResponse:
    """Members: the project's records by state and the batches holding them. Admins choose
    what the project records (POST)."""
    if request.method == "POST":
        return _set_mode(request, project_id)
    access = project_access(user=request.user, project_id=project_id)
    page = Paginator(pages.batches_with_records(access=access), pages.BATCHES_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    batches = list(page.object_list)
    mine = pages.records_per_batch(access=access, batch_ids=[b.pk for b in batches])
    return render(
        request,
        "provenance/project.html",
        {
            "project": access.project,
            "membership": access,
            "counts": pages.record_counts(access=access),
            "page": page,
            "rows": [pages.batch_row(b, project_id=access.project.pk, mine=mine) for b in batches],
            "mode": project_mode(project_id=access.project.pk),
            "modes": Mode.choices,
            "can_manage": access.can("manage_rules"),
        },
    )


def _set_mode(request: HttpRequest, project_id: int) -> HttpResponse:
    # The service asks for the same capability; asking here first keeps a refusal a plain 403.
    access = project_access(user=request.user, project_id=project_id, need="manage_rules")
    try:
        provenance_settings_set(
            access=access, actor=request.user, mode=request.POST.get("mode", ""), request=request
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Saved: what this project records on chain."))
    return redirect("provenance:project", project_id=access.project.pk)
