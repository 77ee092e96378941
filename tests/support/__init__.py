"""The tests' shared helpers, one module per subject, imported as ``tests.support.<module>``."""
