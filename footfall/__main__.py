"""`python -m footfall`: the same as the `footfall` command."""

from footfall.entry import main

main()
