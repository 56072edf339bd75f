"""Static files with or without `collectstatic`.

Production images run `collectstatic` (deploy/start-web.sh): pages then link hashed, compressed
files that browsers cache for good. `make run` and the tests never run it: with no manifest the
plain names are linked, and WhiteNoise serves them straight from static/ (its finders). DEBUG no
longer decides this, so DEBUG can stay off by default. (A collectstatic run by hand on a
development machine leaves a manifest behind: delete var/staticfiles to go back to live files.)
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name  # collectstatic has not run here
        # With a manifest a missing entry is still an error: a broken link found at once.
        return super().stored_name(name)


class SyncMiddlewareChain:
    """The innermost middleware, sync-only on purpose: it makes Django run the whole middleware
    chain as sync code under ASGI (uvicorn), in one crossing into its worker thread.

    Django adapts each middleware to the mode of the one inside it. With an async-capable chain
    interrupted by a sync-only WhiteNoise, every request crossed between the event loop and the
    worker thread 18 times (each `MiddlewareMixin` runs its process_request and
    process_response through sync_to_async when called as async). The views are sync, so the
    request ends up in that thread anyway: running the chain there costs 3 crossings.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
