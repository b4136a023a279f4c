"""The registered champion outside the project: the MLflow model that serves image files, and how it is logged."""
