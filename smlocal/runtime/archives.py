"""The one way smlocal unpacks a tar or zip archive (source dirs, model data, processing code).

Nothing here relies on ``tarfile``'s extraction filters, whose realpath checks were bypassable
before Python 3.11.13 / 3.12.11 / 3.13.4 (CVE-2025-4517, CVE-2025-4138, CVE-2025-4330,
CVE-2024-12718: a chain of nested folders and links makes ``os.path.realpath`` give up past
PATH_MAX, so a final link escaping the destination looks inside). ``tarfile`` and ``zipfile`` only
parse; this module writes:

* every member's path is computed purely: absolute paths, ``..`` components, NUL bytes and
  over-long names are refused;
* everything is written into a fresh folder next to the destination, with ``dir_fd``-relative
  calls that never follow a link (``O_NOFOLLOW``, ``O_EXCL``), then moved into place; a refusal
  removes that folder, so a refused archive leaves nothing behind;
* symbolic links are created last, after every file, and only when their target, resolved
  against the archive's own folders and links, stays inside; a member is never written through a
  link; hard links may only name an earlier regular file of the archive;
* device files, FIFOs, sockets and sparse files are refused; permissions are kept without
  setuid/setgid/sticky bits; owners are not restored;
* the member count, each name's length and the total uncompressed size are bounded (the bound
  holds while streaming, so a compression bomb stops at the limit);
* every pax extended header is checked by :mod:`smlocal.runtime.pax_guard` before ``tarfile``
  parses it (CVE-2024-6232: before 3.11.10 its parser takes quadratic time on crafted headers).

A refusal raises :class:`StagingError` naming the archive and the member.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping

from smlocal.runtime.pax_guard import PaxGuard, PaxRefused

logger = logging.getLogger(__name__)

MAX_TOTAL_BYTES = 10 * 1024**3  # uncompressed bytes of all members together
MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 4096  # a member's path (PATH_MAX) and a link's target
MAX_COMPONENT_BYTES = 255  # one path component (NAME_MAX)
MAX_LINK_HOPS = 40  # links followed resolving one target (the kernel's limit)
MAX_DEPTH = 256  # folders in a member's path or a link's resolution (work per member grows with its square)
HEADER_BYTES = 64 * 1024  # what tarfile may read for one member's headers (pax, GNU long names)
MAX_PAX_BYTES = 64 * 1024**2  # pax header bytes of all members together
CHUNK = 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PERMISSIONS = 0o777  # mode bits kept: never setuid, setgid or sticky


class StagingError(Exception):
    """Input or output data could not be moved; the message becomes the FailureReason.

    Defined here, below :mod:`smlocal.runtime.staging` (which re-exports it), so that archive
    refusals are staging errors without an import cycle.
    """


@dataclass(frozen=True)
class Limits:
    """Bounds on one archive (the defaults suit model artefacts of a few GiB)."""

    total_bytes: int = MAX_TOTAL_BYTES
    members: int = MAX_MEMBERS
    name_bytes: int = MAX_NAME_BYTES
    pax_bytes: int = MAX_PAX_BYTES


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class ArchiveScan:
    """What :func:`scan` read: the regular files' paths and a digest of names and contents."""

    files: frozenset[str]
    digest: str


class Unsafe(Exception):
    """Why one member is refused (pure checks raise it; the caller adds archive and member)."""


@dataclass
class _Entry:
    name: str  # as written in the archive, for messages
    parts: tuple[str, ...]
    kind: str  # file | dir | symlink | hardlink
    mode: int = 0o644
    size: int = 0
    mtime: float | None = None
    link: str = ""  # symlink: its target as written
    link_parts: tuple[str, ...] = ()  # hard link: the member it names
    chunks: Callable[[], Iterator[bytes]] | None = None


# ---- pure checks
def member_parts(name: str, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...]:
    """The path components of a member name, or :class:`Unsafe` when it could leave the folder.

    ``./a//b/`` is ``("a", "b")``; ``.`` alone is ``()`` (the destination itself).
    """
    if "\0" in name:
        raise Unsafe("has a NUL byte in its name")
    if len(os.fsencode(name)) > limits.name_bytes:
        raise Unsafe(f"has a name longer than {limits.name_bytes} bytes")
    if name.startswith("/"):
        raise Unsafe("is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise Unsafe("has a '..' path component")
    if any(len(os.fsencode(p)) > MAX_COMPONENT_BYTES for p in parts):
        raise Unsafe(f"has a path component longer than {MAX_COMPONENT_BYTES} bytes")
    if len(parts) > MAX_DEPTH:
        raise Unsafe(f"has more than {MAX_DEPTH} path components")
    return parts


def check_link_target(target: str) -> None:
    """Refuses a symbolic link target that cannot stay inside whatever it resolves through."""
    if not target:
        raise Unsafe("is a symbolic link with an empty target")
    if "\0" in target:
        raise Unsafe("is a symbolic link whose target has a NUL byte")
    if len(os.fsencode(target)) > MAX_NAME_BYTES:
        raise Unsafe(f"is a symbolic link whose target is longer than {MAX_NAME_BYTES} bytes")
    if target.startswith("/"):
        raise Unsafe(f"is a symbolic link to the absolute path '{target}'")


def resolve_link(link: tuple[str, ...], target: str,
                 links: Mapping[tuple[str, ...], str]) -> tuple[str, ...] | None:
    """Where the link at ``link`` (components inside the folder) points, resolved purely.

    ``links`` maps every symbolic link of the folder to its target; the ones met on the way are
    followed (``..`` after a link climbs from where the link led, as the kernel does). Returns
    the folder-relative components reached, or None when the path leaves the folder; raises
    :class:`Unsafe` past :data:`MAX_LINK_HOPS` links (a loop).
    """
    stack = list(link[:-1])
    pending = deque(target.split("/"))
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        inner = links.get((*stack, part))
        if inner is None:
            stack.append(part)
            if len(stack) > MAX_DEPTH:
                raise Unsafe(f"is a symbolic link that resolves deeper than {MAX_DEPTH} folders")
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise Unsafe(f"is a symbolic link that goes through more than {MAX_LINK_HOPS} links")
        if inner.startswith("/"):
            return None
        pending.extendleft(reversed(inner.split("/")))
    return tuple(stack)


# ---- public entry points
def extract(source: bytes | Path, dest: Path, *, origin: str, kind: str = "tar",
            limits: Limits = DEFAULT_LIMITS) -> None:
    """Unpacks the archive ``source`` (bytes, or a file's path) into ``dest``.

    ``dest`` may already hold files (the archive's members replace those of the same name);
    its parent must exist. ``kind`` is ``tar`` (plain, gzip, bzip2 or xz) or ``zip``.

    Raises:
        StagingError: the archive is not valid, breaks a rule of the module docstring or a
            limit; nothing was written then.
    """
    dest = Path(dest)
    _check_destination(dest)
    temp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        os.chmod(temp, 0o755)
        root = os.open(temp, _DIR_FLAGS)
        try:
            tree = _Tree(root)
            with _opened(source) as raw:
                for entry in _entries(raw, origin, kind, limits):
                    try:
                        tree.add(entry)
                    except Unsafe as exc:
                        raise _refusal(origin, entry.name, exc) from exc
                    except OSError as exc:
                        raise StagingError(f"Archive {origin} could not be unpacked at member "
                                           f"{entry.name}: {exc}") from exc
                tree.finish(origin)
        finally:
            os.close(root)
        _install(temp, dest)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def scan(source: bytes | Path, *, origin: str, kind: str = "tar",
         limits: Limits = DEFAULT_LIMITS) -> ArchiveScan:
    """Reads an archive without writing anything (same parsing and limits as :func:`extract`)."""
    digest = hashlib.sha256()
    files = set()
    with _opened(source) as raw:
        for entry in _entries(raw, origin, kind, limits):
            path = "/".join(entry.parts)
            digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
            if entry.kind == "file":
                files.add(path)
                for chunk in entry.chunks():
                    digest.update(chunk)
    return ArchiveScan(files=frozenset(files), digest=digest.hexdigest()[:16])


# ---- reading members
class _TooLarge(Exception):
    pass


class _BoundedReader(io.RawIOBase):
    """A decompressed stream that refuses to give more than ``allowance`` bytes (reset per member)
    and shows every byte to ``guard`` before giving it."""

    def __init__(self, inner: BinaryIO, guard: PaxGuard):
        self.inner = inner
        self.guard = guard
        self.allowance = HEADER_BYTES

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.allowance <= 0:
            raise _TooLarge
        view = memoryview(buffer)[: self.allowance]
        data = self.inner.read(len(view))
        view[: len(data)] = data
        self.allowance -= len(data)
        self.guard.feed(data)
        return len(data)


def _opened(source: bytes | Path) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")


def _entries(raw: BinaryIO, origin: str, kind: str, limits: Limits) -> Iterator[_Entry]:
    members = total = 0
    reader = _zip_entries(raw, origin) if kind == "zip" else _tar_entries(raw, origin, limits)
    for name, make in reader:
        members += 1
        if members > limits.members:
            raise StagingError(f"Archive {origin} has more than {limits.members} members")
        try:
            entry = make(member_parts(name, limits))
        except Unsafe as exc:
            raise _refusal(origin, name, exc) from exc
        total += entry.size
        if total > limits.total_bytes:
            raise StagingError(f"Archive {origin} is larger than {limits.total_bytes} bytes uncompressed "
                               f"(at member {name})")
        yield entry


_PARSE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError,
                 ValueError, RuntimeError, NotImplementedError)


def _invalid(origin: str, exc: BaseException, kind: str = "tar") -> StagingError:
    if isinstance(exc, _TooLarge):
        return StagingError(f"Archive {origin} has a member header larger than {HEADER_BYTES} bytes")
    if isinstance(exc, PaxRefused):
        return StagingError(f"Archive {origin} has an unsafe pax header: {exc}")
    return StagingError(f"{origin} is not a valid {kind} archive: {exc or type(exc).__name__}")


def _decompressed(raw: BinaryIO) -> BinaryIO:
    head = raw.read(6)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if head == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw


def _tar_entries(raw: BinaryIO, origin: str, limits: Limits):
    guard = PaxGuard(limits.pax_bytes)
    bounded = _BoundedReader(_decompressed(raw), guard)
    buffered = io.BufferedReader(bounded, buffer_size=512)
    try:
        first = buffered.peek(512)[:512]
        if len(first) == 512 and not any(first):
            return  # an empty archive: two zero blocks and nothing else
        archive = tarfile.open(fileobj=buffered, mode="r|")
        for member in archive:
            bounded.allowance = member.size + HEADER_BYTES + tarfile.BLOCKSIZE
            guard.expect_header(archive.offset)  # before tarfile reads it (checked if already read)
            yield member.name, _tar_member(member, archive, origin)
    except (_TooLarge, PaxRefused, *_PARSE_ERRORS) as exc:
        raise _invalid(origin, exc) from exc


def _tar_member(member: tarfile.TarInfo, archive: tarfile.TarFile, origin: str):
    def make(parts: tuple[str, ...]) -> _Entry:
        base = dict(name=member.name, parts=parts, mode=member.mode & _PERMISSIONS, mtime=member.mtime)
        if member.size < 0:
            raise Unsafe("has a negative size")
        if member.type == tarfile.GNUTYPE_SPARSE or member.sparse is not None:
            raise Unsafe("is a sparse file (not supported)")
        if member.isreg():
            def chunks() -> Iterator[bytes]:
                try:
                    stream = archive.extractfile(member)
                    while data := stream.read(CHUNK):
                        yield data
                except (_TooLarge, PaxRefused, *_PARSE_ERRORS) as exc:
                    raise _invalid(origin, exc) from exc
            return _Entry(kind="file", size=member.size, chunks=chunks, **base)
        if member.isdir():
            return _Entry(kind="dir", **base)
        if member.issym():
            check_link_target(member.linkname)
            return _Entry(kind="symlink", link=member.linkname, **base)
        if member.islnk():
            try:
                target = member_parts(member.linkname)
            except Unsafe as exc:
                raise Unsafe(f"is a hard link to '{member.linkname}', which {exc}") from exc
            return _Entry(kind="hardlink", link=member.linkname, link_parts=target, **base)
        if member.ischr() or member.isblk():
            raise Unsafe("is a device file")
        if member.isfifo():
            raise Unsafe("is a FIFO")
        raise Unsafe(f"has an unsupported member type {member.type!r}")
    return make


def _zip_entries(raw: BinaryIO, origin: str):
    try:
        archive = zipfile.ZipFile(raw)
        infos = archive.infolist()
        _check_zip_layout(raw, infos, archive.start_dir, origin)
    except _PARSE_ERRORS as exc:
        raise _invalid(origin, exc, "zip") from exc
    for info in infos:
        yield info.filename, _zip_member(info, archive, origin)


def _check_zip_layout(raw: BinaryIO, infos: list[zipfile.ZipInfo], directory: int, origin: str) -> None:
    """Refuses members whose data overlap another's or the central directory (the overlapping
    "better zip bomb": many entries inflating the same compressed bytes; Python < 3.11.8 accepts it)."""
    end = 0
    previous = None
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise StagingError(f"Archive {origin} has members whose data overlap: {previous} and {info.filename}")
        raw.seek(info.header_offset)
        local = raw.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for member {info.filename}")
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        end = info.header_offset + 30 + name_length + extra_length + info.compress_size
        previous = info.filename
    if end > directory:
        raise StagingError(f"Archive {origin} has member data overlapping its central directory ({previous})")


def _zip_member(info: zipfile.ZipInfo, archive: zipfile.ZipFile, origin: str):
    def chunks() -> Iterator[bytes]:
        left = info.file_size
        try:
            with archive.open(info) as stream:
                while data := stream.read(CHUNK):
                    left -= len(data)
                    if left < 0:
                        raise StagingError(f"Archive {origin} member {info.filename} is larger than it declares")
                    yield data
        except _PARSE_ERRORS as exc:
            raise _invalid(origin, exc, "zip") from exc

    def make(parts: tuple[str, ...]) -> _Entry:
        unix = info.external_attr >> 16 if info.create_system == 3 else 0
        fmt = stat.S_IFMT(unix)
        mode = unix & _PERMISSIONS
        base = dict(name=info.filename, parts=parts, mtime=None)
        if fmt == stat.S_IFLNK:
            if info.file_size > MAX_NAME_BYTES:
                raise Unsafe(f"is a symbolic link whose target is longer than {MAX_NAME_BYTES} bytes")
            target = b"".join(chunks()).decode("utf-8", "surrogateescape")
            check_link_target(target)
            return _Entry(kind="symlink", link=target, **base)
        if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise Unsafe("is a device file, FIFO or socket")
        if info.is_dir() or fmt == stat.S_IFDIR:
            return _Entry(kind="dir", mode=mode or 0o755, **base)
        return _Entry(kind="file", mode=mode or 0o644, size=info.file_size, chunks=chunks, **base)
    return make


def _refusal(origin: str, name: str, exc: Unsafe) -> StagingError:
    return StagingError(f"Archive {origin} contains an unsafe path: {name} ({exc})")


# ---- writing
class _Tree:
    """The fresh folder being filled: a pure model of what is in it, and dir_fd-relative writes."""

    def __init__(self, root: int):
        self.root = root
        self.kinds: dict[tuple[str, ...], str] = {(): "dir"}
        self.links: dict[tuple[str, ...], str] = {}  # created by finish()
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def add(self, entry: _Entry) -> None:
        if not entry.parts:
            if entry.kind != "dir":
                raise Unsafe("is not a folder but names the destination itself")
            return
        if entry.kind == "dir":
            os.fchmod(self._folder(entry.parts), entry.mode | 0o700)
            return
        parent = self._folder(entry.parts[:-1])
        name = entry.parts[-1]
        self._clear(entry.parts, parent)
        if entry.kind == "file":
            self._write(parent, name, entry)
        elif entry.kind == "symlink":
            self.links[entry.parts] = entry.link
        else:
            self._hard_link(parent, name, entry)
        self.kinds[entry.parts] = entry.kind if entry.kind != "hardlink" else "file"

    def finish(self, origin: str) -> None:
        """Creates the links once every file is written (no write can go through them)."""
        try:
            for parts, target in self.links.items():
                if resolve_link(parts, target, self.links) is None:
                    raise Unsafe(f"is a symbolic link to '{target}', which leaves the archive's folder")
                os.symlink(target, parts[-1], dir_fd=self._folder(parts[:-1]))
        except Unsafe as exc:
            raise _refusal(origin, "/".join(parts), exc) from exc
        except OSError as exc:
            raise StagingError(f"Archive {origin} could not be unpacked at member {'/'.join(parts)}: {exc}") from exc
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def _folder(self, parts: tuple[str, ...]) -> int:
        """The folder at ``parts`` (created when missing), opened without following anything."""
        for depth in range(len(parts)):
            kind = self.kinds.get(parts[: depth + 1])
            if kind == "symlink":
                raise Unsafe(f"would be written through the symbolic link {'/'.join(parts[:depth + 1])}")
            if kind not in (None, "dir"):
                raise Unsafe(f"would be written under the file {'/'.join(parts[:depth + 1])}")
        depth = len(parts)
        while depth and parts[:depth] not in self._fds:
            depth -= 1
        fd = self._fds[parts[:depth]] if depth else self.root
        for i in range(depth, len(parts)):
            name = parts[i]
            if self.kinds.get(parts[: i + 1]) is None:
                os.mkdir(name, 0o755, dir_fd=fd)
                self.kinds[parts[: i + 1]] = "dir"
            fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            self._remember(parts[: i + 1], fd)
        return fd

    def _remember(self, parts: tuple[str, ...], fd: int) -> None:
        self._fds[parts] = fd
        while len(self._fds) > 64:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        self._fds.move_to_end(parts)

    def _clear(self, parts: tuple[str, ...], parent: int) -> None:
        """Makes room for a later member of the same name (tar's rule: the last one wins)."""
        kind = self.kinds.get(parts)
        if kind == "dir":
            raise Unsafe("would replace a folder of the archive")
        if kind == "file":
            os.unlink(parts[-1], dir_fd=parent)
        self.links.pop(parts, None)
        self.kinds.pop(parts, None)

    def _write(self, parent: int, name: str, entry: _Entry) -> None:
        fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            written = 0
            for chunk in entry.chunks():
                written += len(chunk)
                if written > entry.size:
                    raise Unsafe("holds more data than its header declares")
                out.write(chunk)
            out.flush()  # before utime: a later flush would set the mtime to now
            os.fchmod(out.fileno(), entry.mode)
            if entry.mtime is not None:
                try:
                    os.utime(out.fileno(), (entry.mtime, entry.mtime))
                except (OverflowError, OSError, ValueError):
                    pass

    def _hard_link(self, parent: int, name: str, entry: _Entry) -> None:
        if self.kinds.get(entry.link_parts) != "file":
            raise Unsafe(f"is a hard link to '{entry.link}', which is not an earlier regular file of the archive")
        source_parent = self._folder(entry.link_parts[:-1])
        try:
            os.link(entry.link_parts[-1], name, src_dir_fd=source_parent, dst_dir_fd=parent,
                    follow_symlinks=False)
        except OSError:  # a file system without hard links: a copy holds the same bytes
            src = os.open(entry.link_parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_parent)
            dst = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            with os.fdopen(src, "rb") as reader, os.fdopen(dst, "wb") as writer:
                shutil.copyfileobj(reader, writer, CHUNK)
                os.fchmod(writer.fileno(), os.fstat(reader.fileno()).st_mode & _PERMISSIONS)


def _check_destination(dest: Path) -> None:
    try:
        info = os.lstat(dest)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise StagingError(f"Cannot unpack into {dest}: it is not a folder")


def _install(temp: Path, dest: Path) -> None:
    """Moves the unpacked folder into place (merging into a destination that has files)."""
    try:
        os.rmdir(dest)  # missing or empty: the unpacked folder simply becomes the destination
    except FileNotFoundError:
        pass
    except OSError:
        src, dst = os.open(temp, _DIR_FLAGS), os.open(dest, _DIR_FLAGS)
        try:
            _merge(src, dst)
        finally:
            os.close(src)
            os.close(dst)
        return
    os.rename(temp, dest)


def _merge(src: int, dst: int) -> None:
    for name in os.listdir(src):
        mine = os.stat(name, dir_fd=src, follow_symlinks=False)
        try:
            theirs = os.stat(name, dir_fd=dst, follow_symlinks=False)
        except FileNotFoundError:
            theirs = None
        if theirs is not None and stat.S_ISDIR(mine.st_mode) and stat.S_ISDIR(theirs.st_mode):
            inner_src, inner_dst = os.open(name, _DIR_FLAGS, dir_fd=src), os.open(name, _DIR_FLAGS, dir_fd=dst)
            try:
                _merge(inner_src, inner_dst)
            finally:
                os.close(inner_src)
                os.close(inner_dst)
            continue
        if theirs is not None:
            if stat.S_ISDIR(theirs.st_mode):
                shutil.rmtree(name, dir_fd=dst)
            else:
                os.unlink(name, dir_fd=dst)
        os.rename(name, name, src_dir_fd=src, dst_dir_fd=dst)
