from django.urls import path

from apps.webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("projects/<int:project_id>/webhooks/", views.webhooks_page, name="list"),
]
