"""Celery tasks: charging."""
