from django.urls import path

from apps.images import styles, uploads, views

app_name = "images"
P = "projects/<int:project_id>/images/"
urlpatterns = [
    path(P, views.generate, name="index"),
    path(P + "masks/", uploads.mask_upload, name="mask_upload"),
    path(P + "queue/<int:job_id>/move/", views.queue_move, name="queue_move"),
    path(P + "styles/", styles.style_list, name="styles"),
    path(P + "styles/<int:style_id>/", styles.style_update, name="style_update"),
    path(P + "styles/<int:style_id>/delete/", styles.style_delete, name="style_delete"),
]
