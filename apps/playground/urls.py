from django.urls import path

from apps.playground import views

app_name = "playground"
urlpatterns = [path("projects/<int:project_id>/playground/", views.playground, name="index")]
