def main() -> None:
    """Entry point placeholder until the CLI lands."""
    raise SystemExit("chatlabel CLI not wired yet")
