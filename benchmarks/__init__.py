"""Benchmark scripts and the OpenAI-compatible mock server; they print figures, tests assert."""
