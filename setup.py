"""Lets Beam build an sdist of igaudit for remote workers (`--setup_file=setup.py`).

Everything (name, version, dependencies, packages) lives in pyproject.toml; this file only
gives Beam's stager the `python setup.py sdist` entry point it falls back to.
"""
from setuptools import setup

setup()
