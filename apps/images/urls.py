from django.urls import path

from apps.images import views

app_name = "images"
urlpatterns = [path("projects/<int:project_id>/images/", views.generate, name="index")]
