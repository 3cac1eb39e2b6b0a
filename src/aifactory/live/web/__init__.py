"""The floor's web dashboard (pages.py), its templates and its static files."""
