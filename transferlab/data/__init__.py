"""Images in: sources into the raw layout, decoding, splits, and the prepared (sharded) dataset format."""
