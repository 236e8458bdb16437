"""`python -m custody` runs the command line."""

from custody.cli.app import main

main()
