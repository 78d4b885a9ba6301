"""alive_worker: a PostgreSQL heartbeat background worker whose ticks run in Python.

Importing the package is cheap and needs no server; the modules that talk to
PostgreSQL (spi, heartbeat, ...) work only inside the worker process.
"""

__version__ = "1.3.0"
