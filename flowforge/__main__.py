"""`python -m flowforge` runs the `flowforge` command."""

from flowforge.cli import main

main()
