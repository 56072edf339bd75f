from apps.jobs.routing import websocket_urlpatterns as job_routes
from apps.review.routing import websocket_urlpatterns as review_routes

websocket_urlpatterns = [*job_routes, *review_routes]
