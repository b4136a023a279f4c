"""Download sources: each one writes the canonical raw layout (see transferlab.raw_layout)."""
