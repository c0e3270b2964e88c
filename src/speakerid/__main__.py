"""`python -m speakerid ...` (what torchrun launches) runs the CLI."""

from speakerid.cli import main

main()
