"""Fuzz targets of woes-auth (see targets.py; `make fuzz` runs them under atheris)."""
