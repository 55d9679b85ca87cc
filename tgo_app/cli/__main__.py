"""`python -m tgo_app.cli` runs the `tgo` console script."""

from tgo_app.cli import main

main()
