"""The edge's only reach into other libraries' internals, one module per library.

Each module names the version it was checked against and what breaks if that changes; its test
under tests/compat fails on an upgrade that moves what it relies on, and pyproject bounds the library.
"""
