from django.urls import path

from apps.review import views

app_name = "review"
urlpatterns = [
    path("review/", views.inbox, name="inbox"),
    path("review/decide/", views.decide, name="decide"),
    path("projects/<int:project_id>/moderation/rules/", views.rules, name="rules"),
    path("review/preferences/", views.preference_export_view, name="preference_export"),
    path("projects/<int:project_id>/loop/", views.loop, name="loop"),
]
