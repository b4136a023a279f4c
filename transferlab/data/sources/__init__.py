"""Data sources that download or import into the raw layout: folders, TensorFlow Datasets, synthetic."""
