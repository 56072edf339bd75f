from django.urls import path

from apps.jobs import consumers

websocket_urlpatterns = [
    path(
        "ws/projects/<int:project_id>/",
        consumers.ProjectConsumer.as_asgi(),
        name="project_socket",
    ),
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi(), name="job_socket"),
]

# So that reverse(name, urlconf="apps.jobs.routing") builds socket paths (events.socket_url).
urlpatterns = websocket_urlpatterns
