"""Checks each pax extended header of a tar stream before Python's ``tarfile`` parses it.

Before Python 3.11.10 / 3.12.6 (CVE-2024-6232, gh-121285), ``tarfile`` parses a pax header
(typeflag ``x``, ``g`` or ``X``) with regular expressions that backtrack:
``re.search(rb"\\d+ hdrcharset=...", buf)`` costs the square of every run of digits in the header
(one 64 KiB run: 3.5 s of CPU here), and the record loop ``(\\d+) ([^=]+)=`` rescans the rest of
the header for every record when the length fields do not frame the records. An archive can
repeat such a header before each of its members.

:class:`PaxGuard` sits between the decompressed stream and ``tarfile``. It follows the chain of
headers in front of each member itself (reading every header with ``tarfile.TarInfo.frombuf``,
as ``tarfile`` does, so both see the same chain) and checks a pax header's bytes, in linear time,
as soon as the last of them arrives, before they are passed on; ``tarfile`` never parses a header
that failed. After each member, the caller says where ``tarfile`` will read the next header
(:meth:`PaxGuard.expect_header`); the guard keeps the last bytes it saw, as ``tarfile`` reads ahead.

A pax header passes when it is a sequence of ``<length> <keyword>=<value>\\n`` records whose
lengths frame them exactly (then only NUL bytes up to the end of its last block), with a bounded
number of records, no ``GNU.sparse.*`` keyword (sparse files are refused anyway) and digit runs
whose squared lengths, summed over the archive, stay within a budget; the archive's pax bytes
and global records are bounded too.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BLOCK = tarfile.BLOCKSIZE
PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
MAX_RECORDS = 1000  # records in one pax header (real ones hold a handful)
MAX_GLOBAL_RECORDS = 64  # records in all global headers: tarfile applies them to every member
MAX_LENGTH_DIGITS = 20  # a record's length field
MAX_DIGIT_WORK = 2**30  # sum of squared digit-run lengths over the archive (< 1 s of the old search)
FREE_DIGIT_RUN = 16  # shorter runs cost the old search a few steps a byte: not counted
WINDOW = 128 * 1024  # stream bytes kept for expect_header (tarfile reads ahead ~10 KiB)
_DIGITS_AS_D = bytes(0x64 if 0x30 <= i <= 0x39 else 0x2E for i in range(256))  # digit: 'd', else '.'


class PaxRefused(Exception):
    """A pax header (or the archive's pax headers together) that ``tarfile`` must not parse."""


@dataclass
class PaxBudget:
    """What the archive's pax headers may still use; :func:`check_pax_header` spends it."""

    header_bytes: int
    digit_work: int = MAX_DIGIT_WORK
    global_records: int = MAX_GLOBAL_RECORDS


def check_pax_header(buf: bytes, size: int, budget: PaxBudget, *, is_global: bool = False) -> None:
    """Checks one pax header: ``buf`` is its data blocks as tarfile reads them, ``size`` its size.

    Raises:
        PaxRefused: the records are malformed or break a bound; ``budget`` is then unusable.
    """
    pos = records = 0
    while pos < size and buf[pos] != 0:
        space = buf.find(b" ", pos, pos + MAX_LENGTH_DIGITS + 1)
        digits = buf[pos:space] if space > pos else b""
        if not digits.isdigit():  # ASCII digits only
            raise PaxRefused(f"a record at byte {pos} does not start with '<length> '")
        length = int(digits)
        end = pos + length
        if length < 5 or end > size:
            raise PaxRefused(f"a record at byte {pos} has the length {length}, which does not fit the header")
        if buf[end - 1] != 0x0A:
            raise PaxRefused(f"the record at byte {pos} does not end with a newline where its length says")
        equals = buf.find(b"=", space + 1, end - 1)
        keyword = buf[space + 1:equals] if equals > space + 1 else b""
        if not keyword or b"\n" in keyword or b"\0" in keyword:
            raise PaxRefused(f"the record at byte {pos} has no '<keyword>='")
        if keyword.startswith(b"GNU.sparse."):
            raise PaxRefused("it describes a GNU sparse file (not supported)")
        records += 1
        if records > MAX_RECORDS:
            raise PaxRefused(f"it has more than {MAX_RECORDS} records")
        pos = end
    if buf.count(0, pos) != len(buf) - pos:
        raise PaxRefused(f"bytes after its last record (at byte {pos}) are not NUL padding")
    if is_global:
        budget.global_records -= records
        if budget.global_records < 0:
            raise PaxRefused(f"the archive's global pax headers hold more than {MAX_GLOBAL_RECORDS} records")
    for length in _digit_runs(buf):
        budget.digit_work -= length * length
        if budget.digit_work < 0:
            raise PaxRefused("its runs of digits are too long (they would make Python's tarfile parse "
                             "it in quadratic time, CVE-2024-6232)")


def _digit_runs(buf: bytes):
    """The lengths of the runs of at least FREE_DIGIT_RUN ASCII digits in ``buf`` (C-speed scans)."""
    marks = buf.translate(_DIGITS_AS_D)
    run, pos = b"d" * FREE_DIGIT_RUN, 0
    while (start := marks.find(run, pos)) >= 0:
        end = marks.find(b".", start)
        pos = len(marks) if end < 0 else end
        yield pos - start


class PaxGuard:
    """Follows a tar stream byte by byte and refuses a pax header before tarfile gets all of it.

    ``feed`` every chunk before handing it on; after each member ``tarfile`` returns, call
    :meth:`expect_header` with where it will read the next header (``TarFile.offset``).
    """

    def __init__(self, header_bytes: int):
        self.header_limit = header_bytes
        self.budget = PaxBudget(header_bytes=header_bytes)
        self.seen = 0  # stream bytes fed so far
        self._recent = bytearray()  # the last WINDOW bytes fed
        self._at: int | None = 0  # where the next header of a chain starts; None: after a member
        self._pending = bytearray()  # the stream from _at on
        self._header: tuple[bytes, int] | None = None  # the chain header at _at: type, size

    def feed(self, data: bytes) -> None:
        """Takes the next bytes of the stream.

        Raises:
            PaxRefused: they complete a pax header that fails :func:`check_pax_header`.
        """
        start = self.seen
        self.seen += len(data)
        if len(data) >= WINDOW:
            self._recent = bytearray(data[-WINDOW:])
        else:
            self._recent += data
            del self._recent[:-WINDOW]
        if self._at is not None and self._at < self.seen:
            self._pending += data[max(0, self._at - start):]
            self._advance()

    def expect_header(self, offset: int) -> None:
        """Says that ``tarfile`` reads its next header at stream ``offset``."""
        if self._at is not None:
            raise PaxRefused("its headers could not be followed (a member ended inside a header chain)")
        first = self.seen - len(self._recent)
        if offset < first:
            raise PaxRefused(f"its headers could not be followed (tarfile went back to byte {offset})")
        self._at, self._header = offset, None
        self._pending = bytearray(self._recent[offset - first:]) if offset < self.seen else bytearray()
        self._advance()

    def _advance(self) -> None:
        while self._at is not None:
            if self._header is None:
                if len(self._pending) < BLOCK:
                    return
                try:
                    info = tarfile.TarInfo.frombuf(bytes(self._pending[:BLOCK]), tarfile.ENCODING,
                                                   "surrogateescape")
                except tarfile.HeaderError:
                    self._stop()  # tarfile ends the archive (or refuses it) here too
                    return
                if info.type not in PAX_TYPES + LONG_NAME_TYPES:
                    self._stop()  # a member: tarfile returns it, then expect_header() follows
                    return
                if info.type in PAX_TYPES:
                    self.budget.header_bytes -= info.size
                    if self.budget.header_bytes < 0:
                        raise PaxRefused(f"the archive's pax headers together exceed {self.header_limit} bytes")
                self._header = (info.type, info.size)
            kind, size = self._header
            need = BLOCK + -(-size // BLOCK) * BLOCK
            if len(self._pending) < need:
                return
            if kind in PAX_TYPES:
                check_pax_header(bytes(self._pending[BLOCK:need]), size, self.budget,
                                 is_global=kind == tarfile.XGLTYPE)
            del self._pending[:need]
            self._at += need
            self._header = None

    def _stop(self) -> None:
        self._at, self._header = None, None
        self._pending = bytearray()
