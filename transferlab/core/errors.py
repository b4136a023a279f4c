"""Errors a user can cause and fix: each carries its own exit code and a one-line message."""

import errno


class UserError(Exception):
    """Bad input (params, files, data) that a user fixes; printed as one line, no traceback."""

    exit_code = 1


class ParamsError(UserError):
    """params.yaml (or an override) names an unknown key, a wrong type or an out-of-range value."""

    exit_code = 2


class DataError(UserError):
    """The configured data cannot be read or is unusable (missing folder, no images, offline tfds)."""

    exit_code = 1


# What the machine, not the code, got wrong: the disk, permissions, a read-only or vanished mount.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENOENT,
                      errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMFILE}
HINTS = {errno.ENOSPC: "the disk is full; free space (or move paths.scratch) and run again",
         errno.EDQUOT: "the disk quota is used up; free space and run again",
         errno.EACCES: "permission denied; check the owner and mode of the file or folder",
         errno.EPERM: "operation not permitted; check the owner and mode of the file or folder",
         errno.EROFS: "the file system is read-only"}


def environment_error(exc: OSError) -> str | None:
    """One line for an I/O error the user fixes (disk full, permission denied ...); None for anything else."""
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    hint = HINTS.get(exc.errno)
    return f"{where}{exc.strerror or exc}" + (f" ({hint})" if hint else "")


INTERRUPTED_EXIT = 130  # the shell's code for a process ended by Ctrl-C
FAILURES_USERS_FIX = (UserError, KeyboardInterrupt, OSError)


def one_line_failure(exc: BaseException, prefix: str, interrupted: str = "interrupted") -> tuple[str, int]:
    """The one line and exit code for a failure the user fixes (bad input, Ctrl-C, a full disk ...); a bug, an
    OSError included, is raised again with its traceback."""
    if isinstance(exc, UserError):
        return f"{prefix}: error: {exc}", exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return f"{prefix}: {interrupted}", INTERRUPTED_EXIT
    if isinstance(exc, OSError) and (message := environment_error(exc)) is not None:
        return f"{prefix}: error: {message}", 1
    raise exc
