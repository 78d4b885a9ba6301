"""Builds the alive_worker Python package and its cffi embedding library.

The embedding library (alive_worker._native) is compiled against the server
headers of the pg_config named by $PG_CONFIG; see alive_worker/_embedding.py.
"""

from setuptools import setup

setup(
    cffi_modules=["alive_worker/_embedding.py:ffibuilder"],
)
