"""`python -m kerasrun`."""

from kerasrun.cli import main

main()
