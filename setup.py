"""Installs the repository's top-level folders as subpackages of one import package, `whysim`.

`whysim` itself is an implicit namespace package, so a wheel puts nothing else into site-packages.
The package list is found, never written out: a subpackage added later cannot be left out of the
wheel (tests/test_packaging.py builds one and checks).
"""
from setuptools import find_packages, setup

FOLDERS = ["indexer", "search", "webui", "migrations"]

setup(
    packages=[f"whysim.{package}" for package in find_packages(include=[f"{folder}*" for folder in FOLDERS])],
    package_dir={f"whysim.{folder}": folder for folder in FOLDERS},
    package_data={
        "whysim.migrations": ["script.py.mako"],
        "whysim.webui": ["templates/*.html", "static/*.css", "static/*.svg", "static/js/*.js"],
    },
)
