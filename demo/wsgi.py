"""WSGI entry point of the demo site: ``DJANGO_SETTINGS_MODULE=demo.settings.production gunicorn demo.wsgi``.

No default settings module: a bare ``gunicorn demo.wsgi`` would otherwise serve the DEBUG
development settings to the network.
"""
import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    raise ImproperlyConfigured("Set DJANGO_SETTINGS_MODULE (demo.settings.production to serve, "
                               "demo.settings.dev on your own machine) before starting demo.wsgi.")
application = get_wsgi_application()
