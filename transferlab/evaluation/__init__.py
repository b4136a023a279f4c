"""Scoring a model on the test split, its figures, and batch prediction for users."""
