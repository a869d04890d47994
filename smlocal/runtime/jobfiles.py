"""Reading, from the server's side, what a job wrote, without following the job's links.

A job owns everything under its ``/opt/ml``: it may replace ``output/data`` by a link to ``/etc``,
make ``output/failure`` a FIFO, or leave a link to a host file among its outputs. The server runs
outside the job's mount namespace, so following any of those would read the host. Every function
here starts from a folder smlocal made (``root``, trusted) and opens each component below it with
``O_NOFOLLOW``; files are opened ``O_NONBLOCK`` and read only when ``fstat`` says they are regular.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from smlocal.runtime import archives

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 128  # folders deeper than this are not walked


@dataclass(frozen=True)
class Found:
    """One entry of a walked folder.

    Attributes:
        parts: Its path components below the walked folder.
        kind: ``dir``, ``file``, ``symlink`` or ``other`` (FIFO, socket, device).
        target: A symlink's target as written.
        mode: Its permission bits (``lstat``).
        mtime: Its modification time (``lstat``).
    """

    parts: tuple[str, ...]
    kind: str
    target: str = ""
    mode: int = 0o644
    mtime: float = 0.0

    @property
    def rel(self) -> str:
        return "/".join(self.parts)


def _components(rel: str | PurePosixPath) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(rel).parts if p not in ("", "."))


def open_dir(root: Path, rel: str | PurePosixPath = "") -> int | None:
    """A descriptor of ``root/rel`` (close it), or None when a component is missing, a link or not
    a folder. ``root`` itself is opened as given."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    for part in _components(rel):
        if part == "..":
            os.close(fd)
            return None
        try:
            inner = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = inner
    return fd


def open_regular(root: Path, rel: str | PurePosixPath) -> BinaryIO | None:
    """``root/rel`` opened for reading when it is a regular file reached through folders only."""
    parts = _components(rel)
    if not parts:
        return None
    parent = open_dir(root, PurePosixPath(*parts[:-1]) if len(parts) > 1 else "")
    if parent is None:
        return None
    try:
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(root: Path, rel: str | PurePosixPath, limit: int) -> tuple[bytes, bool] | None:
    """The first ``limit`` bytes of a regular file (and whether there was more), else None."""
    handle = open_regular(root, rel)
    if handle is None:
        return None
    with handle:
        data = handle.read(limit + 1)
    return data[:limit], len(data) > limit


def walk(root: Path, rel: str | PurePosixPath = "", log: Callable[[str], None] | None = None) -> list[Found]:
    """Every entry below ``root/rel`` (sorted, parents first), never entering a link.

    Returns an empty list when ``root/rel`` is not a folder reached through folders only.
    """
    top = open_dir(root, rel)
    if top is None:
        return []
    found: list[Found] = []
    try:
        _walk(top, (), found, log)
    finally:
        os.close(top)
    return found


def _walk(fd: int, prefix: tuple[str, ...], found: list[Found], log: Callable[[str], None] | None) -> None:
    for name in sorted(os.listdir(fd)):
        parts = (*prefix, name)
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        meta = dict(mode=stat.S_IMODE(info.st_mode) & 0o777, mtime=info.st_mtime)
        if stat.S_ISLNK(info.st_mode):
            found.append(Found(parts, "symlink", os.readlink(name, dir_fd=fd), **meta))
        elif stat.S_ISREG(info.st_mode):
            found.append(Found(parts, "file", **meta))
        elif stat.S_ISDIR(info.st_mode):
            found.append(Found(parts, "dir", **meta))
            if len(parts) >= MAX_DEPTH:
                if log:
                    log(f"smlocal: not descending into {'/'.join(parts)}: deeper than {MAX_DEPTH} folders")
                continue
            try:
                inner = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                _walk(inner, parts, found, log)
            finally:
                os.close(inner)
        else:
            found.append(Found(parts, "other", **meta))


def link_destinations(entries: list[Found]) -> dict[tuple[str, ...], tuple[str, ...] | None]:
    """For each symlink of a walked folder, the entry it leads to inside it (None: outside, or a
    chain too long to follow)."""
    links = {e.parts: e.target for e in entries if e.kind == "symlink"}
    resolved: dict[tuple[str, ...], tuple[str, ...] | None] = {}
    for parts, target in links.items():
        try:
            archives.check_link_target(target)
            resolved[parts] = archives.resolve_link(parts, target, links)
        except archives.Unsafe:
            resolved[parts] = None
    return resolved


def iter_regular_files(root: Path, rel: str | PurePosixPath = "",
                       log: Callable[[str], None] | None = None) -> Iterator[tuple[str, BinaryIO]]:
    """(relative path, open file) for every regular file below ``root/rel``; a symlink counts as
    the file it leads to when that is inside the folder, and is skipped (with a log line) when not."""
    entries = walk(root, rel, log)
    kinds = {e.parts: e.kind for e in entries}
    destinations = link_destinations(entries)
    base = _components(rel)
    for entry in entries:
        source = entry.parts
        if entry.kind == "symlink":
            source = destinations.get(entry.parts)
            if source is None or kinds.get(source) != "file":
                if source is None and log:
                    log(f"smlocal: skipped {entry.rel}: a symbolic link to '{entry.target}' outside the folder")
                continue
        elif entry.kind == "other":
            if log:
                log(f"smlocal: skipped {entry.rel}: not a regular file")
            continue
        elif entry.kind != "file":
            continue
        handle = open_regular(root, PurePosixPath(*base, *source))
        if handle is None:
            continue
        with handle:
            yield entry.rel, handle
