"""End-to-end tests (a package, so that its conftest does not replace the top-level `conftest` module)."""
