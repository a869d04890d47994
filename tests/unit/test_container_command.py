"""container_command (pure): Docker's ENTRYPOINT/CMD overrides and the local interpreter."""

from __future__ import annotations

from smlocal.runtime.container_command import local_command, override
from smlocal.runtime.remote_function import dependency_file, is_function_job

PY = "/venv/bin/python"


def test_entrypoint_replaces_the_images_and_drops_its_cmd():
    assert override(["/train.sh"], ["train"], entrypoint=["python3", "x.py"], arguments=None) == ["python3", "x.py"]
    assert override(["/train.sh"], ["train"], entrypoint=["sh"], arguments=["-c", "true"]) == ["sh", "-c", "true"]


def test_arguments_alone_replace_the_cmd():
    assert override(["/train.sh"], ["train"], entrypoint=None, arguments=["--a", "1"]) == ["/train.sh", "--a", "1"]
    assert override([], ["bash"], entrypoint=None, arguments=["python3", "x.py"]) == ["python3", "x.py"]
    assert override(["/train.sh"], ["train"], entrypoint=None, arguments=None) == ["/train.sh", "train"]


def _local(image_entrypoint=(), image_cmd=(), *, entrypoint=None, arguments=None, mapped=False):
    return local_command(image_entrypoint, image_cmd, entrypoint=entrypoint, arguments=arguments, python=PY,
                         mapped=mapped)


def test_an_aws_images_interpreters_are_the_jobs():
    for head in ("python", "python3", "python3.10", "/usr/bin/python3", "/opt/conda/bin/python"):
        assert _local(entrypoint=[head, "x.py"]) == [PY, "x.py"]
        assert _local(image_cmd=["/bin/bash"], arguments=[head, "x.py"]) == [PY, "x.py"]  # arguments as the command
    assert _local(entrypoint=["/bin/bash", "python x.py"]) == ["/bin/bash", "python x.py"]
    assert _local(image_cmd=["/bin/bash"]) == ["/bin/bash"]


def test_a_mapped_images_own_interpreter_is_kept():
    assert _local(["/other/bin/python", "-m", "t"], mapped=True) == ["/other/bin/python", "-m", "t"]
    assert _local(["python3", "-m", "t"], mapped=True) == [PY, "-m", "t"]
    assert _local(["{python}", "-c", "print('{python}')"], mapped=True) == [PY, "-c", f"print('{PY}')"]
    # arguments after the mapped command are arguments, not a program
    assert _local(["/other/bin/python", "-m", "t"], arguments=["python3"], mapped=True) == [
        "/other/bin/python", "-m", "t", "python3"]


def test_a_requests_entrypoint_on_a_mapped_image_names_the_images_python():
    # ContainerEntrypoint names a path inside the image: without Docker that is the job's Python
    mapping = ["/other/bin/python", "-m", "t"]
    assert _local(mapping, entrypoint=["/usr/local/bin/python3", "x.py"], arguments=["--a"], mapped=True) == [
        PY, "x.py", "--a"]
    assert _local((), entrypoint=["/opt/conda/bin/python", "x.py"], mapped=True) == [PY, "x.py"]
    assert _local((), arguments=["/usr/bin/python3", "x.py"], mapped=True) == [PY, "x.py"]  # arguments as command
    # {python} is a setting of the mapping only
    assert _local(mapping, entrypoint=["sh", "-c", "{python} x.py"], mapped=True) == ["sh", "-c", "{python} x.py"]


def test_the_sdk_job_driver_is_recognised():
    driver = ["/bin/bash", "/opt/ml/input/data/sagemaker_remote_function_bootstrap/job_driver.sh"]
    assert is_function_job({"ContainerEntrypoint": driver})
    assert not is_function_job({"ContainerEntrypoint": ["/bin/bash"]}) and not is_function_job(None)
    args = ["--s3_base_uri", "s3://b/p", "--dependency_settings", '{"dependency_file": "req.txt"}']
    assert dependency_file(args) == "req.txt"
    assert dependency_file(["--dependency_settings", '{"dependency_file": "../x.txt"}']) is None
    assert dependency_file(["--dependency_settings", "{}"]) is None
