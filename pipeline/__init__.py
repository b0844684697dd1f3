"""Pipelines that chain the project's scripts (``capture.py``)."""
