"""`python -m footfall`: the same as the `footfall` command."""

from footfall.cli import main

main()
