"""Errors a user can cause and fix: each carries its own exit code and a one-line message."""


class UserError(Exception):
    """Bad input (params, files, data) that a user fixes; printed as one line, no traceback."""

    exit_code = 1


class ParamsError(UserError):
    """params.yaml (or an override) names an unknown key, a wrong type or an out-of-range value."""

    exit_code = 2


class DataError(UserError):
    """The configured data cannot be read or is unusable (missing folder, no images, offline tfds)."""

    exit_code = 1
