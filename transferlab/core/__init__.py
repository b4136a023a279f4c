"""The lowest floor: errors, the validated params model, atomic writes, hashing, endpoints, the backbone table."""
