"""`python -m football`: the command line (what a screener worker runs a job with)."""

from football.cli import main

main()
