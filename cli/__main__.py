"""python -m ironsight.cli: the same as the `ironsight` command."""

from ironsight.cli.main import main

main()
