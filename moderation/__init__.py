"""Django app that moderates image-plus-text posts with vision-language models."""
