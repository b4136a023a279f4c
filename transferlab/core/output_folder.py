"""A folder a user names for a command's output (`--out`): written into file by file, never replaced or emptied;
one that holds anything but an earlier output of ours is refused before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from transferlab.core.atomic import atomic_write_text
from transferlab.core.errors import UserError

# Written before the outputs: a folder holding it is one a transferlab command created or was given empty, so its
# files are ours to overwrite. Any other non-empty folder may hold a user's files, which we never touch.
MARKER = ".transferlab-output"


class OutputFolderError(UserError):
    """A bad output folder argument: exit 2, as argparse's own refusals."""

    exit_code = 2


def check_output_folder(out: Path, inputs: Sequence[Path] = (), owned: bool = False, option: str = "--out") -> None:
    """Refuse `out` when it is one of `inputs` or holds one, is not a folder, or (unless `owned`: a folder of the
    project's own layout) holds files without our marker."""
    where = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if where == source or where in source.parents:
            raise OutputFolderError(f"{option} {out}: is the input folder {given} or holds it; name a folder of "
                                    "its own")
    if Path(out).is_symlink() and not where.exists():  # mkdir would fail on the link after all the work
        raise OutputFolderError(f"{option} {out}: a symbolic link to {where}, which does not exist")
    existing = next(folder for folder in (where, *where.parents) if folder.exists())
    if not existing.is_dir():
        raise OutputFolderError(f"{option} {out}: {'exists' if existing == where else f'{existing} exists'} and is "
                                "not a folder")
    if not owned and where.is_dir() and not (where / MARKER).is_file() and any(where.iterdir()):
        raise OutputFolderError(f"{option} {out}: holds files that transferlab did not write; name a new or empty "
                                "folder (nothing in it was touched)")


def write_outputs(out: Path, files: Mapping[str, str], writer: str, owned: bool = False) -> None:
    """Write `files` (name -> text) into `out`, each replaced whole; the folder itself is never swapped, so what
    else it holds stays. Checked again just before: the folder may have changed since the command's first check."""
    check_output_folder(out, owned=owned)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        atomic_write_text(out / MARKER, f"outputs of {writer}: the next run may overwrite {', '.join(files)}\n")
    for name, text in files.items():
        atomic_write_text(out / name, text)
