"""Testing helpers for plugin authors and for our own tests (fixtures, NAS stand-in, conformance)."""
