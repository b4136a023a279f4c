"""Keras models: backbone + pixel scaling assembly, the output convention, features, head, fine-tuning, devices."""
