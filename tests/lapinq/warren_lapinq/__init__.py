"""Adapter that runs lapinq's own REST-API tests against `warren dev` (see plugin.py)."""
