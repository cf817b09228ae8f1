"""Celery side: the app, the GPU worker's tasks, its engine and the beat schedule."""
