from django.urls import path

from apps.finetunes import views

app_name = "finetunes"
urlpatterns = [
    path("projects/<int:project_id>/finetune/", views.new_finetune, name="new"),
    path("projects/<int:project_id>/finetune/estimate/", views.estimate, name="estimate"),
]
