"""The WSGI entry point gunicorn loads (``hl_django.wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hl_django.settings")
application = get_wsgi_application()
