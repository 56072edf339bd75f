"""Gallery boards (collections): any member lists them and their items (the outputs they may
see); members and admins make boards and add or remove items, as on the gallery page."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from apps.api.errors import ApiError
from apps.api.native.common import ERRORS, PageQuery, page, page_list, username
from apps.api.native.outputs import OutputOut, output_json
from apps.galleries import selectors as gallery_selectors
from apps.galleries import services as gallery_services
from apps.outputs.models import Collection
from apps.projects import selectors as project_selectors
from apps.projects.selectors import ProjectAccess

router = Router(tags=["galleries"])
COLLECTIONS = "/projects/{int:project_id}/collections/"
COLLECTION = COLLECTIONS + "{int:collection_id}/"


class CollectionOut(Schema):
    id: int
    name: str
    description: str
    created_by: str
    created_at: datetime


class CollectionPage(Schema):
    data: list[CollectionOut]
    has_more: bool


class CollectionDetail(CollectionOut):
    items: list[OutputOut] = Field(
        ..., description="A page of its outputs (those the caller may see), newest first"
    )
    has_more: bool = Field(..., description="Whether `items` has another page")


class CollectionCreate(Schema):
    name: str = Field(..., min_length=1, max_length=200)


class ItemOut(Schema):
    collection: int
    output: int
    in_collection: bool


def collection_json(c: Collection) -> dict:
    return {
        "id": c.pk,
        "name": c.name,
        "description": c.description,
        "created_by": username(c.created_by),
        "created_at": c.created_at,
    }


def _board(access: ProjectAccess, collection_id: int) -> Collection:
    board = (
        Collection.objects.select_related("created_by")
        .filter(project=access.project, pk=collection_id)
        .first()
    )
    if board is None:
        raise ApiError(404, "No such board")
    return board


@router.get(COLLECTIONS, url_name="collections", response={200: CollectionPage, **ERRORS})
def list_collections(request: HttpRequest, project_id: int, q: Query[PageQuery]):
    """The project's boards, newest first."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    rows, more = page_list(gallery_selectors.project_collections(access=access), q)
    return {"data": [collection_json(c) for c in rows], "has_more": more}


@router.post(COLLECTIONS, url_name="collections", response={201: CollectionOut, **ERRORS})
def create_collection(request: HttpRequest, project_id: int, body: CollectionCreate):
    """Members and admins: a new board (names are unique in the project: 400)."""
    access = project_selectors.project_access(
        user=request.user, project_id=project_id, need="launch_job"
    )
    board = gallery_services.collection_create(
        project=access.project, name=body.name, actor=request.user, request=request
    )
    return Status(201, collection_json(board))


@router.get(COLLECTION, url_name="collection", response={200: CollectionDetail, **ERRORS})
def get_collection(request: HttpRequest, project_id: int, collection_id: int, q: Query[PageQuery]):
    """A board with a page of its items (paged like every list, by output id)."""
    access = project_selectors.project_access(user=request.user, project_id=project_id)
    board = _board(access, collection_id)
    items = gallery_selectors.gallery(
        access=access,
        user=request.user,
        filters=gallery_selectors.GalleryFilters(collection=board.pk),
    )
    rows, more = page(items, q)
    return {**collection_json(board), "items": [output_json(o) for o in rows], "has_more": more}


def _item(request: HttpRequest, project_id: int, collection_id: int, output_id: int, add: bool):
    access, output = gallery_selectors.output_access(
        user=request.user, project_id=project_id, output_id=output_id, need="launch_job"
    )
    board = _board(access, collection_id)
    inside = board.outputs.filter(pk=output.pk).exists()
    if inside != add:  # the page's toggle, only when it changes something: PUT/DELETE repeat safely
        inside = gallery_services.collection_toggle(collection=board, output=output)
    return {"collection": board.pk, "output": output.pk, "in_collection": inside}


@router.put(
    COLLECTION + "items/{int:output_id}/",
    url_name="collection_item",
    response={200: ItemOut, **ERRORS},
)
def add_item(request: HttpRequest, project_id: int, collection_id: int, output_id: int):
    """Members and admins: put an output (one they may see) on the board."""
    return _item(request, project_id, collection_id, output_id, add=True)


@router.delete(
    COLLECTION + "items/{int:output_id}/",
    url_name="collection_item",
    response={200: ItemOut, **ERRORS},
)
def remove_item(request: HttpRequest, project_id: int, collection_id: int, output_id: int):
    """Members and admins: take an output off the board."""
    return _item(request, project_id, collection_id, output_id, add=False)
