"""Files and directories that only their owner may read, whatever the process's umask.

What Ferry keeps under `var/` is personal data (object bodies, the indexes naming them, mail)
or the keys to it, so files are made 0600 and directories 0700 from the moment they exist:
`os.open(..., 0o600)` and `mkdir(0o700)` are narrowed by the umask but never widened, and a
`chmod` after creation undoes an unusual umask that would take the owner's own rights away.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents, each 0700; existing ones are left alone."""
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it first, with its own mode
        os.chmod(directory, DIR_MODE)


def open_private(path: Path, flags: int) -> int:
    """`os.open` of a file that is (or is made) 0600; returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch_private(path: Path) -> None:
    """Make sure `path` exists and is 0600 (SQLite's -wal and -shm files copy its mode);
    a file left wider by an older version is narrowed."""
    os.close(open_private(path, os.O_RDWR))
