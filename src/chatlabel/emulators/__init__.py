"""Loopback fakes of the platforms' HTTP APIs, shipped for tests and the demo."""
