"""Testing helpers for plugin authors and our own tests: fixtures, conformance, NAS stand-in."""
