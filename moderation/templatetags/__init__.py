"""Template tags of the moderation admin."""
