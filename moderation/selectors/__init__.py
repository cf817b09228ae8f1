"""Reads of the moderation app, one module per subject; views, the API and services query through them."""
