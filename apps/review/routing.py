from django.urls import path

from apps.review import consumers

websocket_urlpatterns = [
    path("ws/review/", consumers.ReviewConsumer.as_asgi(), name="review_socket"),
]
