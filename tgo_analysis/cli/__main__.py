"""`python -m tgo_analysis.cli` runs the `tgo` console script."""

from tgo_analysis.cli import main

main()
