"""The pure labeling core: assignment policy, gold scoring, verdicts and agreement (no I/O)."""
