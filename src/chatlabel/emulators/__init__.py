"""Loopback fakes of the platforms' HTTP APIs, shipped for tests and the demo (as httpx ships MockTransport)."""
