from django.urls import path

from apps.provenance import views

app_name = "provenance"
urlpatterns = [
    # Public: anyone, signed in or not (what they show: apps/provenance/pages.py).
    path("verify/", views.verify, name="verify"),
    path("verify/<str:sha256>/", views.verify_hash, name="verify_hash"),
    path("verify/<str:sha256>/proof.json", views.proof_download, name="proof"),
    # Members of the project.
    path("projects/<int:project_id>/provenance/", views.project_provenance, name="project"),
]
