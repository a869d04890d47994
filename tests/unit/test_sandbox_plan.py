"""The sandbox plan (pure): what a job's filesystem is made of, in which order, and its text form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smlocal.runtime.backends.base import RunSpec, SandboxPolicy
from smlocal.runtime.backends.sandbox_plan import (
    CREDENTIAL_PATHS,
    HostFacts,
    Mount,
    SandboxUnavailable,
    encode_plan,
    parse_mountinfo,
    sandbox_plan,
)
from smlocal.runtime.backends.sandbox_init import decode_plan, source_order

DATA = "/var/lib/smlocal"
JOB = f"{DATA}/jobs/training/j/algo-1"
SCRATCH = f"{DATA}/jobs/training/j/.algo-1.sandbox"
ENV = f"{DATA}/envs/abc"


def fake_host(entries: dict[str, str], mounts=(), home="/home/dev", sizes=None) -> HostFacts:
    """A host from ``{path: "dir" | "file" | "link:TARGET"}``; parents are folders."""
    tree = {"/": "dir"}
    for path, kind in entries.items():
        parent = os.path.dirname(path)
        while parent not in tree:
            tree[parent] = "dir"
            parent = os.path.dirname(parent)
        tree[path] = kind

    def realpath(path: str) -> str:
        parts, out = Path(path).parts[1:], "/"
        for part in parts:
            out = os.path.join(out, part)
            kind = tree.get(out, "")
            if kind.startswith("link:"):
                out = os.path.normpath(os.path.join(os.path.dirname(out), kind[5:]))
        return out

    def kind(path: str):
        value = tree.get(path)
        return "link" if value and value.startswith("link:") else value

    def listdir(path: str) -> list[str]:
        return [os.path.basename(p) for p in tree if p != "/" and os.path.dirname(p) == path]

    return HostFacts(mounts=tuple(mounts), kind=kind, listdir=listdir, readlink=lambda p: tree[p][5:],
                     realpath=realpath, home=home, size=lambda p: (sizes or {}).get(p, 10))


BASE = {"/usr/bin/python3": "file", "/bin": "link:usr/bin", "/etc/passwd": "file", "/etc/shadow": "file",
        "/proc": "dir", "/sys": "dir", "/dev/null": "file", "/tmp": "dir", "/home/dev/notes": "file",
        "/opt/ml": "dir", JOB: "dir", SCRATCH: "dir", f"{ENV}/bin/python": "file", f"{DATA}/state.sqlite3": "file"}
MOUNTS = (Mount("/", "ext4", False), Mount("/proc", "proc", False), Mount("/mnt/data", "ext4", False),
          Mount("/mnt/cdrom", "iso9660", True), Mount("/run/user/1000", "tmpfs", False))


def plan_for(entries=None, *, mounts=MOUNTS, command=("/usr/bin/python3", "train.py"), env=None, home="/home/dev",
             binds=(), **spec):
    host = fake_host({**BASE, "/mnt/data/x": "file", "/mnt/cdrom/y": "file", "/run/user/1000/bus": "file",
                      "/small.json": "file", "/big.img": "file", **(entries or {})}, mounts, home,
                     sizes={"/big.img": 5 << 30})
    run = RunSpec(command=command, env=env or {"PATH": "/usr/bin:/bin"}, opt_ml=Path(JOB), binds=binds, **spec)
    policy = SandboxPolicy(hidden=(Path(DATA), Path("/run/smlocal")), shared_copy_on_write=(Path(DATA) / "envs",))
    return sandbox_plan(run, policy, host)


def kinds(plan: dict) -> list[str]:
    return [step[0] for step in plan["steps"]]


def test_the_new_root_is_built_before_the_pivot_and_the_covers_after_it():
    plan = plan_for()
    order = kinds(plan)
    assert order[0] == "root"
    pivot = order.index("pivot")
    assert order[pivot:pivot + 4] == ["pivot", "proc", "sys", "dev"]
    assert set(order[1:pivot]) <= {"dir", "link", "layer", "robind", "copy"}
    assert all(kind not in ("cover", "blank", "bind") for kind in order[:pivot])
    assert plan["scratch"] == SCRATCH


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def test_every_host_folder_is_a_layer_and_folders_holding_mounts_or_the_scratch_are_rebuilt():
    steps = plan_for()["steps"]
    layers = {step[2] for step in steps if step[0] == "layer"}
    dirs = {step[1] for step in steps if step[0] == "dir"}
    assert {"/usr", "/etc", "/home/dev", "/opt", "/mnt/data"} <= layers  # the home is a layer of its own
    assert {"/mnt", "/var", "/var/lib", "/home"} <= dirs  # hold a mount, the scratch, a home
    assert ["robind", "/mnt/cdrom", "/mnt/cdrom"] in steps  # a read-only host mount stays read-only
    # /run (the host's Unix sockets, a user's runtime dir mounted inside) is never taken from the host
    assert "/run" in dirs and ["cover", "/run"] in steps
    assert not any(s[0] in ("layer", "robind", "copy") and _inside(s[1], "/run") for s in steps)
    assert ["link", "/bin", "usr/bin"] in steps
    assert ["copy", "/small.json"] in steps and ["robind", "/big.img", "/big.img"] in steps  # beside such folders
    # replaced or hidden: an empty place in the new root, never the host's folder
    assert {"/proc", "/sys", "/dev", "/tmp", DATA} <= dirs
    assert not any(step[0] == "layer" and (step[1].startswith(DATA) and step[1] != ENV or step[1] in
                                           ("/proc", "/sys", "/dev", "/tmp", "/run")) for step in steps)
    indices = [step[3] for step in steps if step[0] == "layer"]
    assert len(indices) == len(set(indices))  # each its own upper layer


def test_the_job_folder_binds_and_the_requirements_env_come_after_the_covers_and_are_sealed_in():
    plan = plan_for(command=(f"{ENV}/bin/python", "train.py"), binds=((Path("/srv/in"), "/opt/ml/processing/in"),))
    steps = plan["steps"]
    cover = steps.index(["cover", DATA])
    opt_ml = steps.index(["bind", JOB, "/opt/ml", False])
    env_layer = next(i for i, s in enumerate(steps) if s[0] == "layer" and s[1] == ENV)
    bind = steps.index(["bind", "/srv/in", "/opt/ml/processing/in", False])
    tmp = steps.index(["bind", f"{SCRATCH}/tmp", "/tmp", False])
    assert steps.index(["dev"]) < steps.index(["cover", "/dev/shm"]) < tmp < cover < opt_ml < bind < env_layer
    assert DATA in plan["seal"] and "/dev/shm" not in plan["seal"] and "/tmp" not in plan["seal"]


def test_sources_are_opened_before_the_first_step():
    plan = decode_plan(encode_plan(plan_for(command=(f"{ENV}/bin/python",))))
    opened = source_order(plan)
    sourced = [i for i, step in enumerate(plan["steps"]) if step[0] in ("bind", "layer", "robind")]
    assert opened == sourced
    assert any(i > plan["steps"].index(["cover", DATA]) for i in opened)  # a bind placed inside a cover


def test_the_text_form_round_trips():
    plan = plan_for(network_isolation=True, workdir="/opt/ml/code")
    assert decode_plan(encode_plan(plan)) == plan


@pytest.mark.parametrize("bad", ["/opt/a\tb", "/opt/a\nb"])
def test_paths_with_tabs_or_newlines_are_refused(bad):
    plan = plan_for(binds=((Path(bad), "/opt/ml/x"),))
    with pytest.raises(SandboxUnavailable, match="tab or a newline"):
        encode_plan(plan)


def test_a_hidden_folder_under_tmp_is_covered_only_inside_a_program_folder_shown_there():
    entries = {"/tmp/venv/bin/python": "file", "/tmp/venv/cache/secret": "file", "/tmp/other/secret": "file"}
    host = fake_host({**BASE, **entries}, MOUNTS)
    spec = RunSpec(command=("/tmp/venv/bin/python",), env={"PATH": "/tmp/venv/bin:/usr/bin"}, opt_ml=Path(JOB))
    policy = SandboxPolicy(hidden=(Path("/tmp/venv/cache"), Path("/tmp/other")))
    steps = sandbox_plan(spec, policy, host)["steps"]
    layer = next(i for i, s in enumerate(steps) if s[:3] == ["layer", "/tmp/venv", "/tmp/venv"])
    assert steps.index(["bind", f"{SCRATCH}/tmp", "/tmp", False]) < layer < steps.index(["cover", "/tmp/venv/cache"])
    assert ["cover", "/tmp/other"] not in steps  # the job's /tmp is its own: /tmp/other is not there


def test_credentials_of_the_developer_are_covered_folders_and_blanked_files():
    home = "/home/dev"
    entries = {f"{home}/.aws/credentials": "file", f"{home}/.netrc": "file", f"{home}/.ssh": "link:/secrets/ssh",
               "/secrets/ssh/id_ed25519": "file", f"{home}/.config/gcloud/x": "file", "/etc/gshadow": "file",
               "/root/.aws/config": "file"}
    plan = plan_for(entries, env={"PATH": "/usr/bin", "HOME": "/root"})
    steps = plan["steps"]
    covers = {s[1] for s in steps if s[0] == "cover"}
    blanks = {s[1] for s in steps if s[0] == "blank"}
    assert {f"{home}/.aws", "/secrets/ssh", f"{home}/.config/gcloud", "/root/.aws"} <= covers  # the link's target
    assert blanks == {f"{home}/.netrc", "/etc/shadow", "/etc/gshadow"}
    assert {f"{home}/.aws", "/secrets/ssh", "/root/.aws"} <= set(plan["seal"])
    assert f"{home}/.docker" not in covers  # absent: nothing to cover
    assert steps.index(["pivot"]) < min(steps.index(["cover", p]) for p in covers)
    assert {p.split("/")[-1] for p in CREDENTIAL_PATHS} >= {".aws", ".ssh", ".gnupg", ".docker", ".kube", "gcloud",
                                                             ".azure", ".netrc", ".pypirc", ".git-credentials",
                                                             "shadow", "gshadow"}


def test_mountinfo_is_parsed_with_its_escapes():
    text = ("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            "28 27 0:25 / /mnt/my\\040disk ro,nosuid shared:1 - tmpfs none ro,size=4k\n")
    assert parse_mountinfo(text) == (Mount("/", "ext4", False), Mount("/mnt/my disk", "tmpfs", True))


def test_smlocals_own_source_is_software_a_job_may_need():
    """An editable install lives in its checkout (a CI clone under /tmp, say): the built-in algorithms import it."""
    from pathlib import Path

    import smlocal
    from smlocal.runtime.backends import process

    assert str(Path(smlocal.__file__).resolve().parent.parent) in process.SOFTWARE_DIRS


def test_container_engines_state_is_an_empty_folder_and_its_mounts_are_not_shown():
    merged = "/var/lib/docker/overlay2/abc/merged"
    plan = plan_for({f"{merged}/etc/hostname": "file", "/var/lib/docker/volumes/v/_data/secret": "file",
                     "/var/lib/containerd/io/x": "file", "/var/log/syslog": "file"},
                    mounts=(*MOUNTS, Mount(merged, "overlay", False)))
    named = [step for step in plan["steps"] if any("/var/lib/docker" in str(f) or "containerd" in str(f)
                                                  for f in step[1:])]
    assert named == [["dir", "/var/lib/containerd"], ["dir", "/var/lib/docker"]]
    assert any(step[:2] == ["dir", "/var/log"] or step[:2] == ["layer", "/var/log"] for step in plan["steps"])
