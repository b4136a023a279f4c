"""MLflow: stage runs under one pipeline run, and the registry promotion gate."""
