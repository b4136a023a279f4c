"""Gradient attacks, the epsilon sweep and the adversarial report."""
