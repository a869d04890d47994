"""Archive safety: nothing is written outside the destination, and a bad archive writes nothing;
packing a job's folder never follows the job's links."""

import io
import os
import tarfile

import pytest

from smlocal.runtime import archives, jobfiles
from smlocal.runtime.staging import StagingError, make_tar_gz


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
        archives.extract(_tar({"good.txt": b"ok", evil: b"bad"}), dest, origin="s3://b/model.tar.gz")
    assert not (tmp_path / "evil").exists()
    assert not (dest / "good.txt").exists()


def test_links_out_of_the_tree_are_refused(tmp_path):
    with pytest.raises(StagingError, match="link"):
        archives.extract(_tar({}, symlink=("link", "/etc/passwd")), tmp_path / "d", origin="x")


def test_round_trip(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"1")
    (src / "sub" / "b.txt").write_text("2")
    archive = make_tar_gz(src, tmp_path / "model.tar.gz")
    archives.extract(archive.read_bytes(), tmp_path / "out", origin="x")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"1"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "2"
    with tarfile.open(archive) as t:
        assert sorted(t.getnames()) == ["a.bin", "sub", "sub/b.txt"]


def test_packing_keeps_inside_links_and_never_follows_outside_ones(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    opt_ml = tmp_path / "opt_ml"
    model = opt_ml / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.bin").write_bytes(b"w")
    os.symlink("sub/w.bin", model / "latest")
    os.symlink(str(secret), model / "stolen")
    os.symlink("..", model / "up")
    os.mkfifo(model / "pipe")
    lines = []
    archive = make_tar_gz(model, tmp_path / "model.tar.gz", root=opt_ml, log=lines.append)
    with tarfile.open(archive) as t:
        members = {m.name: m for m in t.getmembers()}
        assert sorted(members) == ["latest", "sub", "sub/w.bin"]
        assert members["latest"].issym() and members["latest"].linkname == "sub/w.bin"
    assert sum("skipped model/" in line for line in lines) == 3


def test_packing_a_folder_that_is_a_link_packs_nothing(tmp_path):
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "output").mkdir(parents=True)
    os.symlink("/etc", opt_ml / "output" / "data")
    archive = make_tar_gz(opt_ml / "output" / "data", tmp_path / "out.tar.gz", root=opt_ml)
    with tarfile.open(archive) as t:
        assert t.getnames() == []


def test_reading_a_job_file_refuses_links_and_fifos_without_blocking(tmp_path):
    (tmp_path / "output").mkdir()
    os.mkfifo(tmp_path / "output" / "failure")
    assert jobfiles.read_regular(tmp_path, "output/failure", 100) is None  # returns at once
    os.unlink(tmp_path / "output" / "failure")
    os.symlink("/etc/hostname", tmp_path / "output" / "failure")
    assert jobfiles.read_regular(tmp_path, "output/failure", 100) is None
    os.unlink(tmp_path / "output" / "failure")
    (tmp_path / "output" / "failure").write_text("x" * 10)
    assert jobfiles.read_regular(tmp_path, "output/failure", 4) == (b"xxxx", True)


def test_pip_runs_without_smlocals_secrets_or_the_developers_aws_keys():
    from smlocal.runtime.environments import pip_environment

    env = pip_environment({"PATH": "/usr/bin", "HTTPS_PROXY": "http://proxy:3128", "PIP_INDEX_URL": "https://i",
                           "SMLOCAL_ADMIN_TOKEN": "t" * 32, "SMLOCAL_SECRET_ACCESS_KEY": "s",
                           "AWS_SECRET_ACCESS_KEY": "k", "AWS_SESSION_TOKEN": "x"})
    assert env == {"PATH": "/usr/bin", "HTTPS_PROXY": "http://proxy:3128", "PIP_INDEX_URL": "https://i",
                   "PIP_NO_WARN_SCRIPT_LOCATION": "1"}
