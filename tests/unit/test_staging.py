"""Archive safety: nothing is written outside the destination, and a bad archive writes nothing."""

import io
import tarfile

import pytest

from smlocal.runtime.staging import StagingError, extract_tar, make_tar_gz


def _tar(members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type = tarfile.SYMTYPE
            info.linkname = symlink[1]
            archive.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../evil", "a/../../evil", "/etc/evil"])
def test_path_escapes_are_refused_before_writing(tmp_path, evil):
    dest = tmp_path / "dest"
    with pytest.raises(StagingError, match="unsafe path"):
        extract_tar(_tar({"good.txt": b"ok", evil: b"bad"}), dest, origin="s3://b/model.tar.gz")
    assert not (tmp_path / "evil").exists()
    assert not (dest / "good.txt").exists()


def test_links_out_of_the_tree_are_refused(tmp_path):
    with pytest.raises(StagingError, match="link"):
        extract_tar(_tar({}, symlink=("link", "/etc/passwd")), tmp_path / "d", origin="x")


def test_round_trip(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"1")
    (src / "sub" / "b.txt").write_text("2")
    archive = make_tar_gz(src, tmp_path / "model.tar.gz")
    extract_tar(archive.read_bytes(), tmp_path / "out", origin="x")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"1"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "2"
    with tarfile.open(archive) as t:
        assert sorted(t.getnames()) == ["a.bin", "sub", "sub/b.txt"]
