"""The inbox's live channel: a reviewer's socket joins `review.<project>` for each project where
they review, and is told when that queue changed (an output flagged, an item decided). The message
carries no content: the page fetches the queue over HTTP, where access is checked again."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.review.selectors import review_accesses


def review_group(project_id: int) -> str:
    return f"review.{project_id}"


class ReviewConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        projects = await database_sync_to_async(lambda: list(review_accesses(user=user)))()
        if not projects:
            await self.close()  # strangers and non-reviewers: the handshake is refused
            return
        self.groups_joined = [review_group(p) for p in projects]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "ready", "projects": projects})

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def review_changed(self, message):
        await self.send_json({"type": "changed", "project": message.get("project")})
