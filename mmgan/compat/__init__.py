"""Module paths plugins imported before mmgan was laid out by responsibility, kept until mmgan 1.0.

``import mmgan.hookspecs``, ``mmgan.metrics`` and ``mmgan.shards`` load the modules here (``mmgan/__init__.py``
maps the old names to them, so they need no file of their own directly in ``mmgan/``). New code imports
:mod:`mmgan.api`.
"""
