"""Image URIs → local runtimes (pure).

SageMaker names every job's code by an ECR image URI. Without Docker, smlocal maps each image to
a runtime it can run as a local process:

* framework images (scikit-learn, XGBoost, PyTorch, TensorFlow, MXNet, Hugging Face) run SDK
  *script mode*: the user's entry point under this machine's Python;
* built-in algorithm images (XGBoost without an entry point, KNN) run smlocal's emulation of the
  algorithm with the real library;
* Python images (SageMaker base Python, SageMaker Distribution: what SDK ``@remote``/``@step``
  functions run in outside Studio) run a job's ContainerEntrypoint under this machine's Python,
  which has the SageMaker SDK;
* anything else must be mapped in ``[tool.smlocal.images]``; an unmapped image fails the job with a
  reason naming that setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$"
)

# repository name → framework, for the framework containers the SDK's image_uris.retrieve names.
FRAMEWORK_REPOSITORIES = {
    "sagemaker-scikit-learn": "sklearn",
    "sagemaker-xgboost": "xgboost",
    "pytorch-training": "pytorch",
    "pytorch-inference": "pytorch",
    "sagemaker-pytorch": "pytorch",
    "tensorflow-training": "tensorflow",
    "tensorflow-inference": "tensorflow",
    "mxnet-training": "mxnet",
    "mxnet-inference": "mxnet",
    "huggingface-pytorch-training": "huggingface",
    "huggingface-pytorch-inference": "huggingface",
}

# Python images with the SageMaker SDK and no training toolkit of their own, as the SDK names them:
# image_uris.get_base_python_image_uri (sagemaker-base-python-310) and the SageMaker Distribution
# (sagemaker-distribution-prod)
PYTHON_REPOSITORIES = re.compile(r"^(?:sagemaker-base-python(?:-\d+)?|sagemaker-distribution(?:-[a-z]+)?)$")

# built-in algorithms smlocal emulates (repository name → algorithm)
EMULATED_ALGORITHMS = {"knn": "knn"}

# built-in algorithms AWS has that smlocal does not emulate: a clear failure, not a guess.
OTHER_BUILTIN_ALGORITHMS = {
    "linear-learner", "factorization-machines", "kmeans", "pca", "lda", "ntm", "randomcutforest",
    "blazingtext", "image-classification", "object-detection", "semantic-segmentation",
    "seq2seq", "forecasting-deepar", "object2vec", "ipinsights",
}


@dataclass(frozen=True)
class ImageRef:
    uri: str
    account: str
    region: str
    repository: str
    tag: str | None

    @property
    def version(self) -> str | None:
        """The framework version of a framework tag: '1.2-1-cpu-py3' → '1.2-1', '2.0-cpu-py310' → '2.0'."""
        if not self.tag:
            return None
        match = re.match(r"^(\d+(?:\.\d+)*(?:-\d+)?)(?:-(?:cpu|gpu)|$)", self.tag)
        if match:
            return match.group(1)
        return self.tag


@dataclass(frozen=True)
class Runtime:
    """What runs a job. ``kind`` is 'framework', 'algorithm', 'python' or 'custom'."""

    kind: str
    image: str
    framework: str | None = None
    version: str | None = None
    algorithm: str | None = None


class UnresolvableImage(Exception):
    """The image cannot run locally; the message becomes the job's FailureReason."""


def parse_image_uri(uri: str) -> ImageRef | None:
    match = _ECR.match(uri.strip())
    if not match:
        return None
    return ImageRef(
        uri=uri,
        account=match["account"],
        region=match["region"],
        repository=match["repository"],
        tag=match["tag"],
    )


def resolve_runtime(uri: str, *, has_entry_point: bool) -> Runtime:
    """Maps an AWS image URI to its local runtime, or raises UnresolvableImage.

    Args:
        uri: the job's image URI (AlgorithmSpecification.TrainingImage, AppSpecification.ImageUri,
            a model container's Image).
        has_entry_point: whether the job carries an SDK script-mode entry point
            (``sagemaker_program``); this is what decides XGBoost framework vs algorithm mode.
    """
    ref = parse_image_uri(uri)
    if ref is None:
        raise UnresolvableImage(_unmapped(uri))
    repo = ref.repository.rsplit("/", 1)[-1]
    if repo == "sagemaker-xgboost" or repo == "xgboost":
        if has_entry_point:
            return Runtime("framework", uri, framework="xgboost", version=ref.version)
        return Runtime("algorithm", uri, algorithm="xgboost", version=ref.version or "1")
    if repo in FRAMEWORK_REPOSITORIES:
        return Runtime("framework", uri, framework=FRAMEWORK_REPOSITORIES[repo], version=ref.version)
    if PYTHON_REPOSITORIES.match(repo):
        return Runtime("python", uri, version=ref.tag)
    if repo in EMULATED_ALGORITHMS:
        return Runtime("algorithm", uri, algorithm=EMULATED_ALGORITHMS[repo], version=ref.tag)
    if repo in OTHER_BUILTIN_ALGORITHMS:
        raise UnresolvableImage(
            f"smlocal does not emulate the built-in algorithm '{repo}' (image {uri}). "
            "Emulated built-ins: xgboost, knn. Map the image to a local command under "
            "[tool.smlocal.images] to run it."
        )
    raise UnresolvableImage(_unmapped(uri))


def _unmapped(uri: str) -> str:
    return (
        f"smlocal cannot run image '{uri}' without Docker: it is not a SageMaker framework or "
        "emulated built-in algorithm image. Map it to a local command in [tool.smlocal.images] "
        f"(pyproject.toml or $SMLOCAL_CONFIG), e.g. [tool.smlocal.images.\"{uri}\"] "
        "command = [\"python\", \"-m\", \"my_trainer\"]."
    )
