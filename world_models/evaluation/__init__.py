"""Held-out evaluation of world models (``learned-envs evaluate``), ``compare`` and their plots."""
