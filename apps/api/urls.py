from apps.api.native import api

# The native API's URL patterns, namespace "api" (reverse("api:job", ...)).
urlpatterns = api.urls[0]
app_name = "api"
