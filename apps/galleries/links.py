"""Signed, expiring links to one output's image: what the OpenAI-compatible images endpoint
answers for `response_format: "url"` (OpenAI's image URLs also work for an hour, with no login).

A link names the output, the file and the user it was made for, signed with the site's secret
(django.core.signing, its own salt) and dated. Opening it checks, at that moment: the signature,
the age (ATELIER["SIGNED_LINK_SECONDS"]), and that this user may still see this output (the same
selector as the gallery: a member who was removed, or an output deleted or hidden by review since,
answers 404). A link is a capability, like a pre-signed S3 URL: whoever holds it sees the image
until it expires, so it is only ever given to the caller who asked for the image.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.http import Http404
from django.urls import reverse

from apps.galleries import selectors
from apps.outputs.models import Output

SALT = "atelier.galleries.signed-link"
FILES = ("image",)


def signed_link(*, output: Output, user, which: str = "image") -> str:
    """The site-relative path of a link to `output`'s `which` file, made for `user`."""
    if which not in FILES:
        raise ValueError(f"no signed links to {which!r}")
    token = signing.dumps(
        {"o": output.pk, "p": output.project_id, "u": user.pk, "w": which}, salt=SALT
    )
    name = f"atelier-{output.pk}-{output.sha256[:10]}.png"
    return reverse("galleries:signed_file", kwargs={"token": token, "name": name})


def open_link(token: str) -> tuple[Output, str]:
    """The output and file a link names, if it is genuine, young enough and still allowed;
    Http404 otherwise (a forged, expired or revoked link looks like no link at all)."""
    try:
        data = signing.loads(token, salt=SALT, max_age=int(settings.ATELIER["SIGNED_LINK_SECONDS"]))
        output_id, project_id, user_id, which = data["o"], data["p"], data["u"], data["w"]
    except (signing.BadSignature, KeyError, TypeError):
        raise Http404("No such link") from None
    if which not in FILES:
        raise Http404("No such link")
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise Http404("No such link")
    _, output = selectors.output_access(user=user, project_id=project_id, output_id=output_id)
    return output, which
