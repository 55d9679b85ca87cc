"""`python -m tgo_analysis.orchestration.cli` runs the `tgo` console script."""

from tgo_analysis.orchestration.cli import main

main()
