from apps.api.openai_compat import api

# The OpenAI-compatible API's URL patterns, namespace "openai".
urlpatterns = api.urls[0]
app_name = "openai"
