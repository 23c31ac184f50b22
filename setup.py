"""Build script: the package is pure Python until the commP core lands."""

from setuptools import setup

setup()
