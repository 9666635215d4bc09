"""The cloud's only reach into other libraries' internals, one module per library.

Each module names the versions it was checked against and what breaks if they change; its test
under tests/compat fails on an upgrade that moves what it relies on, and pyproject bounds the library.
"""
