"""`python -m chatlabel` runs the command line."""

from .cli import main

main()
