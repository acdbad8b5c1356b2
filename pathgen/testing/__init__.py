"""Test helpers shipped with pathgen (a mock LLM server for tests and benchmarks)."""
