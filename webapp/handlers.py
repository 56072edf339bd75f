"""The ASGI entry for Django's pages and API: the whole middleware chain and the view run as
sync code, in one crossing from the event loop into the request's worker thread.

Django's own ASGIHandler loads the chain in async mode and adapts each middleware to the mode
of the one inside it. Our views are sync, and so is some middleware (WhiteNoise), so a request
crossed between the event loop and its worker thread many times: 18 with the chain as
configured, 6 with a sync-only marker innermost (the innermost handler, `_get_response_async`,
then sat behind an async_to_sync, and each view middleware's `process_view` behind a
sync_to_async). Loaded in sync mode (as under WSGI), the chain, the view middleware and the view
are plain calls; the chain as a whole is called through one sync_to_async, thread-sensitive as
Django's own adapters are, so the request's database connection stays on one thread. The rest
(reading the body, streaming a response, the per-request thread) is Django's ASGIHandler.

An async view would still work (Django's sync path runs it through async_to_sync); none is
routed through this handler today.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        # get_response_async awaits the chain: the sync chain, in one thread crossing.
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
