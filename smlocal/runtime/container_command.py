"""What a job's container runs, as Docker and SageMaker decide it (pure).

CreateTrainingJob's ``AlgorithmSpecification.ContainerEntrypoint`` / ``ContainerArguments`` and
CreateProcessingJob's ``AppSpecification`` ones override the image's ``ENTRYPOINT`` and ``CMD``:

* an entrypoint replaces the image's ENTRYPOINT, and (as ``docker run --entrypoint`` does) drops
  the image's CMD: the container runs ``entrypoint + arguments``;
* arguments alone replace the CMD: the image's own ENTRYPOINT runs with them (an image without
  one runs the arguments as the command).

Without Docker there is no image filesystem, so the interpreter a command names is mapped to a
local one, by where each part of the command comes from:

* the request's ContainerEntrypoint (or ContainerArguments run as the command) and an AWS image's
  own defaults name programs inside the image: every Python path there (``python3``,
  ``/usr/local/bin/python3``, ``/opt/conda/bin/python``...) is the job's local Python, whatever the
  image, a ``[tool.smlocal.images]``-mapped one included;
* a ``[tool.smlocal.images]`` mapping's ``command`` names this machine's programs: only
  ``{python}`` (anywhere in it) and a plain ``python``/``python3`` first word mean the job's
  Python; any other path (e.g. ``/venv/bin/python``) is run as it is.
"""

from __future__ import annotations

import re
from typing import Sequence

PYTHON_PLACEHOLDER = "{python}"
_PLAIN_PYTHON = re.compile(r"python(?:3(?:\.\d+)?)?")
_ANY_PYTHON = re.compile(r"(?:/[\w./-]*/)?python(?:3(?:\.\d+)?)?")


def override(image_entrypoint: Sequence[str], image_cmd: Sequence[str], *,
             entrypoint: Sequence[str] | None, arguments: Sequence[str] | None) -> list[str]:
    """The argv a container runs: its ENTRYPOINT and CMD after the request's overrides.

    Args:
        image_entrypoint: The image's ENTRYPOINT (empty when it has none).
        image_cmd: The image's CMD (what runs after the ENTRYPOINT when no arguments are given).
        entrypoint: ContainerEntrypoint of the request, if any.
        arguments: ContainerArguments of the request, if any.

    Example: ``override(["/train.sh"], ["train"], entrypoint=None, arguments=["--a", "1"])`` is
    ``["/train.sh", "--a", "1"]``; with ``entrypoint=["python3", "x.py"]`` it is
    ``["python3", "x.py", "--a", "1"]``.
    """
    if entrypoint:
        return [*entrypoint, *(arguments or ())]
    return [*image_entrypoint, *(arguments if arguments else image_cmd)]


def local_command(image_entrypoint: Sequence[str], image_cmd: Sequence[str], *,
                  entrypoint: Sequence[str] | None, arguments: Sequence[str] | None, python: str,
                  mapped: bool) -> list[str]:
    """The argv to run here: :func:`override`, its program's interpreter mapped to the local one.

    Args:
        image_entrypoint: The image's ENTRYPOINT: a mapping's ``command`` when ``mapped``.
        image_cmd: The image's CMD (an AWS image's default, e.g. ``bash``).
        entrypoint: ContainerEntrypoint of the request, if any.
        arguments: ContainerArguments of the request, if any.
        python: The job's interpreter.
        mapped: The image's ENTRYPOINT/CMD come from a ``[tool.smlocal.images]`` mapping (this
            machine's programs), not from an AWS image.

    Example: with ``mapped=True`` and the mapping ``["/venv/bin/python", "-m", "t"]``, no
    entrypoint runs ``/venv/bin/python -m t``; ``entrypoint=["/usr/local/bin/python3", "x.py"]``
    (a path inside the image) runs ``<python> x.py``.
    """
    if mapped:
        image_entrypoint = [part.replace(PYTHON_PLACEHOLDER, python) for part in image_entrypoint]
        image_cmd = [part.replace(PYTHON_PLACEHOLDER, python) for part in image_cmd]
    argv = override(image_entrypoint, image_cmd, entrypoint=entrypoint, arguments=arguments)
    program_of_mapping = mapped and not entrypoint and (bool(image_entrypoint) or not arguments)
    pattern = _PLAIN_PYTHON if program_of_mapping else _ANY_PYTHON
    if argv and pattern.fullmatch(argv[0]):
        argv[0] = python
    return argv
