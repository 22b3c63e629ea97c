"""Transports: translate between a chat platform and the labeling service, nothing more."""
