"""AWS framework image URIs → smlocal's own framework images (pure).

smlocal cannot pull AWS's images (they sit behind an ECR login), so for the framework images the
seed flows use it builds its own from ``containers/`` and tags them with its own names (never
AWS's). One smlocal image per framework serves every version of that framework the SageMaker SDK's
``image_uris.retrieve`` names, in every region and registry account:

* ``smlocal/sagemaker-scikit-learn:1.2-1`` (scikit-learn 1.2) serves ``sagemaker-scikit-learn``
  0.20.0, 0.23-1, 1.0-1, 1.2-1, 1.4-2 and later tags of the same shape (cpu and arm64 variants);
* ``smlocal/sagemaker-xgboost:3.0-5`` (XGBoost 3.0.5) serves ``sagemaker-xgboost`` 0.90-1 …
  1.7-1, 3.0-5 and the legacy built-in algorithm image ``xgboost:1`` / ``xgboost:latest``. (It
  carries XGBoost 3: smlocal's built-in algorithm emulation needs the XGBoost 2+ API, as on the
  process backend.)
* ``smlocal/sagemaker-pytorch:2.5-cpu-py311`` (torch 2.13.0, the CPU build, on Python 3.11) serves
  ``pytorch-training`` 1.2.0 … 2.8.0 in the SDK's tag shape ``<version>-<cpu|gpu>-<py>`` (short
  versions such as ``2.5-cpu-py311`` too) and the Deep Learning Containers' longer tags
  (``2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker``). The GPU tags run on the CPU: the image has no
  CUDA, so a job sees no GPU (``SM_NUM_GPUS=0``) and the toolkit starts one process per host unless
  ``sagemaker_mpi_num_of_processes_per_host`` says otherwise. Training only: AWS serves PyTorch
  models from separate ``pytorch-inference`` images, which smlocal does not build.

A job therefore runs with the library versions of the smlocal image, not the exact ones of the
version it names; the catalog says which version each image carries. The version the job's URI
names (:func:`aws_version`) still decides version-dependent behaviour, e.g. the built-in XGBoost's
artefact format (a runner passes it as ``SMLOCAL_ALGO_VERSION``).

Matching is by repository and tag, not by account: the 12-digit account and the region are not
checked against the SDK's table, so a copy of an AWS image in the user's own registry with the
same repository and tag maps the same way. The Docker backend prefers an image the engine already
has under the job's own URI (a real AWS image after an ECR login, or a BYO image) and uses this
mapping only otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FrameworkImage", "aws_version", "catalog", "find_image", "image_for_uri", "local_tag",
    "missing_image_reason",
]

# <account>.dkr.ecr[-fips].<region>.<domain>/<repository>[:tag][@digest]; the domain covers every
# partition the SDK names (amazonaws.com, amazonaws.com.cn, c2s.ic.gov, sc2s.sgov.gov, ...).
_ECR_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)"
    r"\.(?P<domain>[a-z0-9.-]+)/(?P<repository>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[A-Za-z0-9_.-]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

# framework version tags: '1.2-1', '0.20.0', '1.2-1-cpu-py3', '0.90-2-cpu-py3' and the Graviton
# ones, '1.0-1-arm64-cpu-py3', '1.3-1-arm64' (served by the same image, built for the engine's CPU)
_VERSION_TAG = r"^(?P<version>\d+\.\d+(?:\.\d+)?(?:-\d+)?)(?:-arm64)?(?:-cpu-py3)?$"
# Deep Learning Containers tags: the SDK's '2.5-cpu-py311', '1.8.1-gpu-py36', and the long forms
# the DLC list names, '1.10.0-gpu-py38-cu113-ubuntu20.04-sagemaker', '2.5.1-cpu-py311-ubuntu22.04-sagemaker-v1.3'
_DLC_TAG = (r"^(?P<version>\d+\.\d+(?:\.\d+)?)-(?:cpu|gpu)-py\d+(?:-cu\d+)?(?:-ubuntu\d+\.\d+)?"
            r"(?:-sagemaker)?(?:-v\d+(?:\.\d+)*)?$")
# the Python tag the SDK's config gives pytorch-training versions from each release on
_PYTORCH_PYTHON = (("1.2", "py3"), ("1.9", "py38"), ("1.13", "py39"), ("2.0", "py310"), ("2.3", "py311"),
                   ("2.6", "py312"))


@dataclass(frozen=True)
class FrameworkImage:
    """One buildable smlocal image and the AWS images it stands in for.

    Attributes:
        name: the short name ``smlocal images build`` takes ('sklearn', 'xgboost').
        repository: smlocal's image repository ('smlocal/sagemaker-scikit-learn').
        version: the image's tag, the framework version it carries ('1.2-1').
        folder: the Dockerfile's folder under ``containers/``.
        aws_repositories: AWS repository names whose framework tags this image serves.
        aws_versions: the framework versions the SageMaker SDK names for those repositories.
        legacy_tags: whole tags of a legacy repository it also serves (``xgboost:1``).
        packages: the main libraries in the image with their versions, for listings.
        tag_pattern: the regular expression a served repository's tag must match (a named group
            ``version``): framework version tags unless given.
    """

    name: str
    repository: str
    version: str
    folder: str
    aws_repositories: tuple[str, ...]
    aws_versions: tuple[str, ...]
    legacy_tags: tuple[tuple[str, str], ...] = ()
    packages: tuple[str, ...] = ()
    tag_pattern: str = _VERSION_TAG

    @property
    def tag(self) -> str:
        """The full local tag, e.g. 'smlocal/sagemaker-scikit-learn:1.2-1'."""
        return f"{self.repository}:{self.version}"

    def version_of(self, repository: str, tag: str) -> str | None:
        """The framework version ``repository:tag`` names when this image serves it, else None."""
        if (repository, tag) in self.legacy_tags:
            return tag
        if repository in self.aws_repositories:
            match = re.match(self.tag_pattern, tag)
            if match:
                return match["version"]
        return None

    def served_uris(self, account: str = "<account>", region: str = "<region>",
                    domain: str = "amazonaws.com") -> list[str]:
        """The AWS URIs (with placeholders unless given) this image serves, for listings."""
        host = f"{account}.dkr.ecr.{region}.{domain}"
        uris = [f"{host}/{repo}:{version}{suffix}"
                for repo in self.aws_repositories for version in self.aws_versions
                for suffix in _tag_suffixes(repo, version)]
        uris += [f"{host}/{repo}:{tag}" for repo, tag in self.legacy_tags]
        return uris


def _tag_suffixes(repository: str, version: str) -> tuple[str, ...]:
    # The SDK appends '-cpu-py3' to the versions whose config lists processors/py_versions: all
    # sklearn versions and XGBoost up to 1.0-1; later XGBoost tags are the bare version. PyTorch
    # tags name the processor and the version's Python.
    if repository == "pytorch-training":
        major_minor = tuple(int(part) for part in version.split(".")[:2])
        python = [py for start, py in _PYTORCH_PYTHON if tuple(map(int, start.split("."))) <= major_minor][-1]
        return (f"-cpu-{python}", f"-gpu-{python}")
    if repository == "sagemaker-xgboost" and version not in ("0.90-1", "0.90-2", "1.0-1"):
        return ("",)
    return ("-cpu-py3",)


_CATALOG: tuple[FrameworkImage, ...] = (
    FrameworkImage(
        name="sklearn",
        repository="smlocal/sagemaker-scikit-learn",
        version="1.2-1",
        folder="sklearn",
        aws_repositories=("sagemaker-scikit-learn",),
        aws_versions=("0.20.0", "0.23-1", "1.0-1", "1.2-1", "1.4-2"),
        packages=("scikit-learn 1.2.2", "pandas 1.5.3", "numpy 1.24.4", "scipy 1.10.1",
                  "sagemaker-training"),
    ),
    FrameworkImage(
        name="xgboost",
        repository="smlocal/sagemaker-xgboost",
        version="3.0-5",
        folder="xgboost",
        aws_repositories=("sagemaker-xgboost",),
        aws_versions=("0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1", "1.7-1",
                      "3.0-5"),
        legacy_tags=(("xgboost", "1"), ("xgboost", "latest")),
        packages=("xgboost 3.0.5", "scikit-learn 1.5.2", "pandas 2.2.3", "numpy 1.26.4",
                  "scipy 1.13.1", "sagemaker-training"),
    ),
    FrameworkImage(
        name="pytorch",
        repository="smlocal/sagemaker-pytorch",
        version="2.5-cpu-py311",
        folder="pytorch",
        aws_repositories=("pytorch-training",),
        aws_versions=("1.2.0", "1.3.1", "1.4.0", "1.5.0", "1.6.0", "1.7.1", "1.8.0", "1.8.1", "1.9.0",
                      "1.9.1", "1.10.0", "1.10.2", "1.11.0", "1.12.0", "1.12.1", "1.13.1", "2.0.0",
                      "2.0.1", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.1", "2.6.0", "2.7.1", "2.8.0"),
        packages=("torch 2.13.0+cpu", "numpy 2.2.6", "sagemaker-pytorch-training 3.0.0",
                  "sagemaker-training 5.1.4", "mpi4py 4.1.2", "Open MPI 4.1 (Debian)", "OpenSSH"),
        tag_pattern=_DLC_TAG,
    ),
)


def catalog() -> tuple[FrameworkImage, ...]:
    """The framework images smlocal can build, in build order."""
    return _CATALOG


def find_image(name: str) -> FrameworkImage | None:
    """The catalog entry by short name ('sklearn', 'xgboost', 'pytorch') or local tag, else None."""
    for image in _CATALOG:
        if name in (image.name, image.tag, image.repository):
            return image
    return None


def image_for_uri(uri: str) -> FrameworkImage | None:
    """The catalog entry serving an AWS framework image URI, or None when none does.

    Args:
        uri: an ECR image URI, e.g. the SDK's
            '683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3'.
    """
    match = _ECR_URI.match(uri.strip())
    if not match:
        return None
    repository, tag = match["repository"], match["tag"] or "latest"
    for image in _CATALOG:
        if image.version_of(repository, tag) is not None:
            return image
    return None


def aws_version(uri: str) -> str | None:
    """The framework version an AWS framework image URI names ('1.2-1' for
    '...sagemaker-scikit-learn:1.2-1-cpu-py3', '1' for '.../xgboost:1'), or None when smlocal has
    no image for it."""
    match = _ECR_URI.match(uri.strip())
    image = image_for_uri(uri)
    if not match or image is None:
        return None
    return image.version_of(match["repository"], match["tag"] or "latest")


def local_tag(uri: str) -> str | None:
    """The smlocal image tag that serves an AWS framework image URI, or None.

    Any region and account, any framework version tag of a mapped repository (the versions the SDK
    offers and later ones of the same shape). A URI that is not an AWS framework image (a BYO
    image, a built-in algorithm smlocal has no image for) gives None.
    """
    image = image_for_uri(uri)
    return image.tag if image else None


def missing_image_reason(uri: str) -> str:
    """The FailureReason of a job whose image is not in the local Docker engine.

    Names the build command when smlocal has an image for the URI, else how to provide one.
    """
    image = image_for_uri(uri)
    if image is not None:
        return (
            f"Image '{uri}' is not in the local Docker engine and smlocal's stand-in "
            f"'{image.tag}' has not been built. Build it with: smlocal images build {image.name} "
            "(or pull the AWS image after an ECR login)."
        )
    return (
        f"Image '{uri}' is not in the local Docker engine and smlocal has no image for it. "
        "Pull or build it into the engine under that name (docker pull / docker build -t), or "
        "run the job with the process backend."
    )
