"""Settings of the demo site: base, dev (default), test, production."""
