from django.urls import path

from apps.jobs import consumers

websocket_urlpatterns = [
    path("ws/projects/<int:project_id>/", consumers.ProjectConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi()),
]
