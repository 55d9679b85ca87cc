"""tgo benchmarks: each row measures tgo and its baseline side by side in one run."""
