import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# Build Django first (as get_asgi_application does): the routing below imports models.
django.setup(set_prefix=False)

from webapp.handlers import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.jobs.consumers import ServerSend  # noqa: E402
from webapp.limits import BodyLimit  # noqa: E402
from webapp.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies are bounded before Django reads (and spools) them: webapp/limits.py.
        "http": BodyLimit(django_asgi_app),
        # ServerSend: event frames skip channels' send wrappers (apps/jobs/consumers.py).
        "websocket": ServerSend(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

from webapp.startup import freeze_startup_objects, load_url_patterns, tune_collector  # noqa: E402

load_url_patterns()
freeze_startup_objects()
tune_collector()
