"""WSGI entry point of the demo site (gunicorn demo.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.dev")
application = get_wsgi_application()
