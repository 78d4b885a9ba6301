"""Example hooks for alive_worker.hook, tested in tests/test_hook_examples.py.

Each module's ``hook`` can be named as it is (``alive_worker.examples.replication_slots:hook``)
or copied and adapted.
"""
