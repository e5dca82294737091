"""`python -m flowforge` runs the `flowforge` command."""

from flowforge.cli.main import main

main()
