"""One thin CLI module per DVC stage: `python -m stages.<name>`."""
