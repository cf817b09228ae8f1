"""``manage.py moderation_apikey USERNAME``: create the user if needed and print a new key last."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from moderation.services.apikeys import apikey_create_for_username


class Command(BaseCommand):
    help = "Create an API key for USERNAME (creating the user if needed); the key is the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        key, raw, created = apikey_create_for_username(username=username, name=name)
        if created:
            self.stderr.write(f"Created user {username!r}.")
        self.stderr.write(f"API key {key.prefix}… for {username!r}; it is shown only once:")
        self.stdout.write(raw)
