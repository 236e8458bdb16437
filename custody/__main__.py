"""`python -m custody` runs the command line."""

from custody.cli import main

main()
