"""Data quality on the cached embeddings: near-duplicates, likely label errors, outliers, drift."""
