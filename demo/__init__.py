"""The demo site that ``manage.py`` runs."""
from workers.celery import app as celery_app

__all__ = ["celery_app"]
