"""The one extraction routine: crafted archives are refused, write nothing, and leave the folder
around the destination untouched; normal archives unpack with their modes, links and hard links."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from archive_cases import (ZIP_SYMLINK, TarMaker, cve_2024_6232, overlapping_zip, pax_record, raw_pax_tar,
                           realpath_overflow, zip_bytes)
from smlocal.runtime import archives, pax_guard
from smlocal.runtime.staging import StagingError


@pytest.fixture
def place(tmp_path):
    """``work/dest`` (already holding a file, as a code dir may) next to ``work/sentinel``."""
    work = tmp_path / "work"
    (work / "dest").mkdir(parents=True)
    (work / "dest" / "existing.txt").write_text("before")
    (work / "sentinel").mkdir()
    (work / "sentinel" / "keep.txt").write_text("keep")
    (tmp_path / "flag").write_text("flag")
    return tmp_path


def _snapshot(root: Path) -> dict[str, tuple]:
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = os.lstat(path)
            body = path.read_bytes() if stat.S_ISREG(info.st_mode) else os.readlink(path) if path.is_symlink() else None
            seen[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), body)
    return seen


def _refused(place: Path, data: bytes, match: str, **kwargs) -> None:
    before = _snapshot(place)
    with pytest.raises(StagingError, match=match) as exc:
        archives.extract(data, place / "work" / "dest", origin="s3://bucket/crafted.tar.gz", **kwargs)
    assert "s3://bucket/crafted.tar.gz" in str(exc.value)
    assert _snapshot(place) == before  # nothing written anywhere, dest unchanged, no temp folder left


def _dest(place: Path) -> str:
    return os.path.realpath(place / "work" / "dest")


# ---- refusals
def test_realpath_overflow_construction_cve_2025_4517(place):
    _refused(place, realpath_overflow(_dest(place), "PWNED", climb=2, hardlink="flag"),
             "unsafe path: a/b/c.* written through the symbolic link a")


def test_realpath_overflow_link_to_a_folder_above(place):
    # the same chain, without writing below a link: the link itself must be refused
    maker, path = TarMaker(), ""
    for step in "abcdefghijklmnop":
        maker.dir(os.path.join(path, "d" * 230)).symlink(os.path.join(path, step), "d" * 230)
        path = os.path.join(path, "d" * 230)
    maker.symlink("up", "/".join("abcdefghijklmnop") + "/" + "/".join([".."] * 17))
    _refused(place, maker.bytes(), "unsafe path: up .*leaves the archive's folder")


def test_link_chain_that_climbs_out(place):
    data = TarMaker().symlink("a", ".").symlink("b", "a/a/a/../..").bytes()
    _refused(place, data, r"unsafe path: b \(is a symbolic link to 'a/a/a/../..', which leaves")


def test_later_link_cannot_turn_an_earlier_one_outward(place):
    # p/b -> x/../.. looks inside until x -> . arrives: then p/x/../.. is one level above dest
    data = TarMaker().dir("p").symlink("p/b", "x/../..").symlink("p/x", ".").bytes()
    _refused(place, data, "unsafe path: p/b .*leaves the archive's folder")


def test_link_loop_is_refused(place):
    _refused(place, TarMaker().symlink("a", "b").symlink("b", "a").bytes(), "more than 40 links")


@pytest.mark.parametrize("name, why", [
    ("../sentinel/evil", "'..' path component"),
    ("sub/../../sentinel/evil", "'..' path component"),
    ("long/" * 30 + "ok\0evil", "NUL byte"),  # long: in a pax record, where NUL survives
    ("x" * 300, "longer than 255 bytes"),
])
def test_unsafe_names(place, name, why):
    _refused(place, TarMaker().file("good.txt", b"ok").file(name, b"bad").bytes(), why)


def test_absolute_path(place):
    target = str(place / "work" / "sentinel" / "evil")
    _refused(place, TarMaker().file("good.txt", b"ok").file(target, b"bad").bytes(), "absolute path")


def test_absolute_and_outward_links(place):
    _refused(place, TarMaker().symlink("etc", "/etc").bytes(), "absolute path '/etc'")
    _refused(place, TarMaker().symlink("out", "../sentinel").bytes(), "leaves the archive's folder")


def test_file_written_through_a_link(place):
    escaping = TarMaker().symlink("s", "../sentinel").file("s/evil", b"bad").bytes()
    _refused(place, escaping, "written through the symbolic link s")
    inside = TarMaker().dir("d").symlink("s", "d").file("s/x", b"bad").bytes()
    _refused(place, inside, "written through the symbolic link s")


@pytest.mark.parametrize("target, why", [
    ("/etc/passwd", "absolute path"),
    ("../sentinel/keep.txt", "'..' path component"),
    ("missing.txt", "not an earlier regular file"),
])
def test_hard_links_outside_or_to_nothing(place, target, why):
    data = TarMaker().hardlink("h", target).file("h", b"overwritten").bytes()
    _refused(place, data, why)


def test_hard_link_to_a_folder_or_link(place):
    _refused(place, TarMaker().dir("d").hardlink("h", "d").bytes(), "not an earlier regular file")
    _refused(place, TarMaker().symlink("l", "x").hardlink("h", "l").bytes(), "not an earlier regular file")


@pytest.mark.parametrize("kind, why", [(tarfile.CHRTYPE, "device file"), (tarfile.BLKTYPE, "device file"),
                                       (tarfile.FIFOTYPE, "FIFO")])
def test_special_files(place, kind, why):
    _refused(place, TarMaker().file("a", b"1").special("dev", kind).bytes(), why)


def test_too_many_members(place):
    maker = TarMaker()
    for i in range(4):
        maker.file(f"f{i}", b"x")
    _refused(place, maker.bytes(), "more than 3 members", limits=archives.Limits(members=3))


def test_too_large(place):
    data = TarMaker().file("a", b"x" * 60).file("b", b"x" * 60).bytes()
    _refused(place, data, "larger than 100 bytes", limits=archives.Limits(total_bytes=100))


def test_compression_bomb_stops_at_the_limit(place):
    # 64 MiB of zeros compress to ~64 KiB: refused from its header, before the data is inflated
    bomb = TarMaker().file("zeros", bytes(64 * 1024 * 1024)).bytes()
    assert len(bomb) < 1024 * 1024
    start = time.monotonic()
    _refused(place, bomb, "larger than 1048576 bytes", limits=archives.Limits(total_bytes=1024 * 1024))
    assert time.monotonic() - start < 2


def test_oversized_header_is_refused(place):
    # a pax header bigger than any real one (tarfile would read all of it into memory)
    _refused(place, TarMaker().file("a/" * 40000 + "x", b"1").bytes(), "header larger than")


def test_not_an_archive(place):
    _refused(place, gzip.compress(b"not a tar at all" * 100), "not a valid tar archive")
    _refused(place, b"PK\x03\x04garbage", "not a valid zip archive", kind="zip")


def test_zip_with_dotdot_and_symlinks(place):
    _refused(place, zip_bytes([("ok.txt", b"1", None), ("../sentinel/evil", b"bad", None)]),
             "'..' path component", kind="zip")
    _refused(place, zip_bytes([("link", b"../sentinel", ZIP_SYMLINK)]), "leaves the archive's folder", kind="zip")
    _refused(place, zip_bytes([("link", b"d", ZIP_SYMLINK), ("d/", b"", None), ("link/x", b"bad", None)]),
             "written through the symbolic link link", kind="zip")
    _refused(place, zip_bytes([("fifo", b"", stat.S_IFIFO | 0o644)]), "FIFO", kind="zip")


def test_overlapping_zip_entries_are_refused(place):
    # 400 entries inflating the same 1 MiB: ~1 KiB of zip for 400 MiB of writes
    bomb = overlapping_zip(400)
    assert len(bomb) < 32 * 1024
    _refused(place, bomb, "members whose data overlap: kernel and kernel", kind="zip")


def test_deep_paths_are_refused(place):
    # per member, the work grows with the square of the depth: 2,000 levels cost ~9 ms each before
    _refused(place, TarMaker().file("a/" * 300 + "f", b"1").bytes(), "more than 256 path components")
    _refused(place, TarMaker().symlink("l", "d/" * 300 + "f").bytes(), "resolves deeper than 256 folders")
    archives.extract(TarMaker().file("a/" * 255 + "f", b"1").bytes(), place / "deep", origin="x")
    assert (place / "deep" / ("a/" * 255 + "f")).read_bytes() == b"1"


# ---- pax headers (CVE-2024-6232: Python < 3.11.10 parses crafted ones in quadratic time)
def test_cve_2024_6232_digit_runs_are_refused_before_tarfile_parses_them(place):
    # well-formed records, but each value is a 50,000-digit run: ~2 s of CPU per member before
    # (it was accepted, after 4 s for these two members); refused here at the first header
    _refused(place, cve_2024_6232(members=2, digits=50_000), "unsafe pax header: its runs of digits are too long")


GOOD = pax_record(b"path", b"good-name")


@pytest.mark.parametrize("pax, why", [
    # the record loop's quadratic case: lengths that do not frame records, one '=' at the very end
    (b"2 " * 30_000 + b"=", "length 2, which does not fit"),
    (b"99 path=short\n", "length 99, which does not fit"),
    (b"x5 a=\n", "does not start with '<length> '"),
    (b"13 pathabcde\n", "has no '<keyword>='"),
    (b"12 =abcdefg\n", "has no '<keyword>='"),
    (b"13 path=abcdefx", "does not end with a newline"),
    (GOOD + b"garbage", "does not start with"),
    (GOOD + b"\0\0x", "not NUL padding"),
    (pax_record(b"GNU.sparse.size", b"100"), "GNU sparse file"),
    (pax_record(b"a", b"b") * 1001, "more than 1000 records"),
])
def test_malformed_pax_headers_are_refused(place, pax, why):
    data = raw_pax_tar([(tarfile.XHDTYPE, GOOD, "first", b"1"), (tarfile.XHDTYPE, pax, "second", b"2")])
    _refused(place, data, f"unsafe pax header: .*{why}")


def test_global_pax_records_and_total_pax_bytes_are_bounded(place):
    many = b"".join(pax_record(b"k%d" % i, b"v") for i in range(40))
    two_globals = raw_pax_tar([(tarfile.XGLTYPE, many, "a", b"1"), (tarfile.XGLTYPE, many, "b", b"2")])
    _refused(place, two_globals, "global pax headers hold more than 64 records")
    headers = raw_pax_tar([(tarfile.XHDTYPE, pax_record(b"comment", b"c" * 400), f"f{i}", b"1") for i in range(3)])
    _refused(place, headers, "pax headers together exceed 1000 bytes", limits=archives.Limits(pax_bytes=1000))
    archives.extract(headers, place / "fits", origin="x", limits=archives.Limits(pax_bytes=1500))


def test_valid_pax_headers_still_extract(place):
    long_dir = "d" * 120
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "0123456789abcdef" * 4}) as tar:  # a global header
        for name, data, extra in [(f"{long_dir}/model.bin", b"weights", {}),
                                  ("données/été.txt", "çà".encode(), {}),
                                  ("numbers.txt", b"n", {"uid": 8**8, "gid": 8**9, "mtime": 1_700_000_000.25})]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in extra.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, f"{long_dir}/model.bin"
        tar.addfile(link)
        # a size only in the pax record, the header's field 0: how tarfile writes a file of 8 GiB or more
        big = tarfile.TarInfo("big.bin")
        big.pax_headers = {"size": "12"}
        tar.fileobj.write(big.tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors) + b"twelve bytes" + bytes(500))
        tar.offset += 3 * tarfile.BLOCKSIZE
        tar.addfile(tarfile.TarInfo("after-big"), io.BytesIO(b""))
    dest = place / "pax"
    archives.extract(buf.getvalue(), dest, origin="pax.tar.gz")
    assert (dest / long_dir / "model.bin").read_bytes() == b"weights"
    assert (dest / "données" / "été.txt").read_text() == "çà"
    assert os.stat(dest / "numbers.txt").st_mtime == 1_700_000_000.25
    assert os.readlink(dest / "link") == f"{long_dir}/model.bin"
    assert (dest / "big.bin").read_bytes() == b"twelve bytes" and (dest / "after-big").exists()
    gnu = io.BytesIO()  # GNU long names ('L' and 'K' headers) pass the pax guard's chain too
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("g" * 150), io.BytesIO(b""))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "g" * 150
        tar.addfile(link)
    archives.extract(gnu.getvalue(), place / "gnu", origin="gnu.tar")
    assert (place / "gnu" / ("g" * 150)).exists() and os.readlink(place / "gnu" / "l") == "g" * 150


def test_pax_guard_accepts_what_tarfile_writes_for_a_huge_file():
    info = tarfile.TarInfo("huge.bin")
    info.size = 9 * 1024**3  # beyond the ustar size field: tarfile writes it as a pax record
    raw = info.tobuf(tarfile.PAX_FORMAT)
    assert b"size=9663676416" in raw
    guard = pax_guard.PaxGuard(header_bytes=1024)
    guard.feed(raw)
    guard.expect_header(len(raw) + info.size)  # where tarfile reads next: after the data
    with pytest.raises(pax_guard.PaxRefused, match="could not be followed"):
        guard.expect_header(0)  # only ever forward


# ---- what is allowed
def test_normal_archive_unpacks_with_modes_links_and_hard_links(place):
    data = (TarMaker().dir("./").file("./run.sh", b"#!/bin/sh\n", 0o4755).dir("sub", 0o750)
            .file("sub/b.txt", b"2", 0o640).symlink("link.txt", "sub/b.txt").symlink("sub/up", "../run.sh")
            .symlink("sublink", "sub").hardlink("sub/hard", "run.sh").dir("empty")
            .file("existing.txt", b"replaced").bytes())
    dest = place / "work" / "dest"
    (dest / "sub").mkdir()
    (dest / "sub" / "old.txt").write_text("kept")
    archives.extract(data, dest, origin="ok.tar.gz")
    assert (dest / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(os.stat(dest / "run.sh").st_mode) == 0o755  # setuid dropped
    assert stat.S_IMODE(os.stat(dest / "sub" / "b.txt").st_mode) == 0o640
    assert os.readlink(dest / "link.txt") == "sub/b.txt" and (dest / "link.txt").read_text() == "2"
    assert os.readlink(dest / "sub" / "up") == "../run.sh"
    assert os.readlink(dest / "sublink") == "sub"
    assert os.stat(dest / "sub" / "hard").st_ino == os.stat(dest / "run.sh").st_ino
    assert (dest / "empty").is_dir()
    assert (dest / "existing.txt").read_text() == "replaced"
    assert (dest / "sub" / "old.txt").read_text() == "kept"
    assert sorted(p.name for p in (place / "work").iterdir()) == ["dest", "sentinel"]


def test_later_member_replaces_an_earlier_one_without_touching_its_hard_link(place):
    data = TarMaker().file("a", b"first").hardlink("b", "a").file("a", b"second").bytes()
    dest = place / "fresh"
    archives.extract(data, dest, origin="x")
    assert (dest / "a").read_bytes() == b"second" and (dest / "b").read_bytes() == b"first"


def test_normal_zip_and_scan(place):
    dest = place / "zipped"
    archives.extract(zip_bytes([("d/", b"", None), ("d/x.py", b"print(1)", stat.S_IFREG | 0o755),
                                ("l", b"d/x.py", ZIP_SYMLINK)]), dest, origin="z.zip", kind="zip")
    assert (dest / "d" / "x.py").read_bytes() == b"print(1)"
    assert stat.S_IMODE(os.stat(dest / "d" / "x.py").st_mode) == 0o755
    assert os.readlink(dest / "l") == "d/x.py"
    one = archives.scan(TarMaker().file("requirements.txt", b"x").file("a", b"1").bytes(), origin="s")
    two = archives.scan(TarMaker().file("requirements.txt", b"x").file("a", b"2").bytes(), origin="s")
    assert one.files == {"requirements.txt", "a"} and one.digest != two.digest


def test_empty_archive_unpacks_to_an_empty_folder(place):
    archives.extract(TarMaker().bytes(), place / "empty", origin="e")
    assert list((place / "empty").iterdir()) == []


@pytest.mark.parametrize("compression", ["bz2", "xz", ""])
def test_other_compressions(place, compression):
    archives.extract(TarMaker(compression).file("a", b"1").bytes(), place / compression, origin="c")
    assert (place / compression / "a").read_bytes() == b"1"


def test_pure_link_resolution():
    links = {("a",): ".", ("p", "x"): "../q"}
    assert archives.resolve_link(("b",), "a/a/x", links) == ("x",)
    assert archives.resolve_link(("b",), "a/..", links) is None
    assert archives.resolve_link(("p", "l"), "x/../r", links) == ("r",)
    assert archives.member_parts("./a//b/") == ("a", "b")
    with pytest.raises(archives.Unsafe, match="'..'"):
        archives.member_parts("a/../b")
