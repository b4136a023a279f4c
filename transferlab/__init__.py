"""transferlab: transfer-learning pipeline."""
