"""Conformance suites that plugin authors run under pytest (storage adapters, plugins)."""
