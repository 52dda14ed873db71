"""The original's magi.util, as far as agents use it (see magi/__init__.py)."""
