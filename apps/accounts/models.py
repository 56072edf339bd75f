# Accounts use django.contrib.auth's User; project roles live in apps.projects.Membership.
