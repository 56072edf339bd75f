# The User admin comes from django.contrib.auth; memberships are edited inline on projects.
