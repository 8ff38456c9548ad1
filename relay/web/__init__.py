"""The web app: the only package that imports Flask (ingest, health, the admin API)."""
