from django.urls import path

from apps.quotas import views

app_name = "quotas"
urlpatterns = [
    path("", views.usage, name="usage"),
    path("usage.csv", views.usage_csv, name="usage_csv"),
]
