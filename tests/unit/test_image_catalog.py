"""AWS framework image URIs → smlocal's own images: every URI the SDK's image_uris.retrieve names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sagemaker
from sagemaker import image_uris

from smlocal.runtime import image_build, image_catalog
from smlocal.runtime.image_catalog import catalog, find_image, local_tag, missing_image_reason

CONFIG_DIR = Path(sagemaker.__file__).parent / "image_uri_config"
REPO_ROOT = Path(__file__).resolve().parents[2]
PARTITION_REGIONS = {"us-east-1", "cn-north-1", "us-gov-west-1", "us-iso-east-1", "us-isob-east-1",
                     "us-isof-south-1"}


def _sdk_uris(framework: str):
    """(version, scope, region, uri) for every version and scope the SDK config names (in a region
    it lists), every region for the first training version, one region of each partition for the
    last one (the SDK's retrieve is slow: all combinations take minutes)."""
    config = json.loads((CONFIG_DIR / f"{framework}.json").read_text())
    for scope, entry in config.items():
        versions = list(entry["versions"].items())
        for index, (version, spec) in enumerate(versions):
            instance = "ml.c6g.large" if scope == "inference_graviton" else "ml.m5.large"
            registries = list(spec["registries"])
            if scope == "training" and index == 0:
                regions = registries
            elif index == len(versions) - 1:
                regions = [r for r in registries if r in PARTITION_REGIONS]
            else:
                regions = registries[:1]
            for region in regions:
                uri = image_uris.retrieve(framework, region=region, version=version, py_version="py3",
                                          instance_type=instance, image_scope=scope)
                yield version, scope, region, uri


@pytest.mark.parametrize(("framework", "tag"), [
    ("sklearn", "smlocal/sagemaker-scikit-learn:1.2-1"),
    ("xgboost", "smlocal/sagemaker-xgboost:3.0-5"),
])
def test_every_sdk_uri_of_the_framework_maps_to_its_local_image(framework, tag):
    seen = set()
    for version, scope, region, uri in _sdk_uris(framework):
        assert local_tag(uri) == tag, (version, scope, region, uri)
        seen.add(version)
    # the SDK offers several versions of each; all of them are served
    assert len(seen) >= 5


PYTORCH = "smlocal/sagemaker-pytorch:2.5-cpu-py311"


def test_every_sdk_pytorch_training_uri_maps_to_the_pytorch_image_cpu_and_gpu():
    """Every pytorch-training version the SDK names (and its short aliases) with each of its Python
    versions on a CPU instance type, and on a GPU one (those tags run on the CPU); the image's own
    version (the newest on Python 3.11) in every region the SDK lists; pytorch-inference is not served."""
    config = json.loads((CONFIG_DIR / "pytorch.json").read_text())["training"]
    aliases = {full: short for short, full in config["version_aliases"].items()}
    seen = set()
    for version, spec in config["versions"].items():
        if spec["repository"] != "pytorch-training":  # sagemaker-pytorch 0.4.0-1.1.0 (2018-19, py2): not served
            continue
        registries = list(spec["registries"])
        names = filter(None, (version, aliases.get(version)))
        cases = [(registries[0], name, py, "ml.m5.xlarge") for name in names for py in spec["py_versions"]]
        cases.append((registries[0], version, spec["py_versions"][-1], "ml.g5.xlarge"))
        if version == "2.5.1":  # the image's own version in every region (the SDK's retrieve is slow)
            cases += [(region, version, "py311", "ml.m5.xlarge") for region in registries[1:]]
        for region, name, py_version, instance in cases:
            uri = image_uris.retrieve("pytorch", region=region, version=name, py_version=py_version,
                                      instance_type=instance, image_scope="training")
            assert local_tag(uri) == PYTORCH, (name, region, instance, uri)
            assert image_catalog.aws_version(uri) == name
            seen.add((version, "gpu" in uri.rsplit(":", 1)[1]))
    assert len(seen) >= 2 * 25 and ("2.5.1", True) in seen
    inference = image_uris.retrieve("pytorch", region="us-east-1", version="2.5", py_version="py311",
                                    instance_type="ml.m5.xlarge", image_scope="inference")
    assert local_tag(inference) is None


def test_regions_of_every_partition_and_the_versions_named_in_the_brief():
    sklearn, xgboost = "smlocal/sagemaker-scikit-learn:1.2-1", "smlocal/sagemaker-xgboost:3.0-5"
    cases = {
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3": sklearn,
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:0.20.0-cpu-py3": sklearn,
        "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.4-2-cpu-py3": sklearn,
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.0-1-arm64-cpu-py3": sklearn,
        "510948584623.dkr.ecr.af-south-1.amazonaws.com/sagemaker-xgboost:1.3-1-arm64": xgboost,
        "833128469047.dkr.ecr.us-iso-east-1.c2s.ic.gov/sagemaker-xgboost:1.7-1": xgboost,
        "414596584902.dkr.ecr-fips.us-gov-west-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3": xgboost,
        "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:3.0-5": xgboost,
        "433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost:1": xgboost,
        "433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost:latest": xgboost,
        "433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost": xgboost,
        # a later version of the same shape than this SDK knows
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.5-1-cpu-py3": sklearn,
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3@sha256:"
        + "a" * 64: sklearn,
        # the Deep Learning Containers' long tags (their available_images list), and a GPU one
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker": PYTORCH,
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:1.10.0-gpu-py38-cu113-ubuntu20.04-sagemaker":
            PYTORCH,
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
        "2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker-v1.3": PYTORCH,
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-training:2.3-gpu-py311": PYTORCH,
    }
    for uri, expected in cases.items():
        assert local_tag(uri) == expected, uri


@pytest.mark.parametrize("uri", [
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311",  # serving: not built
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.0.1-gpu-py310-cu121-ubuntu20.04-ec2",
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:latest",
    "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own-image:latest",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:my-custom-build",
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-gpu-py3",
    "smlocal/sagemaker-scikit-learn:1.2-1",
    "python:3.11-slim",
    "",
])
def test_images_smlocal_has_no_stand_in_for_map_to_none(uri):
    assert local_tag(uri) is None


def test_catalog_entries_point_at_real_dockerfiles_and_are_found_by_name():
    names = [image.name for image in catalog()]
    assert names == ["sklearn", "xgboost", "pytorch"]
    for image in catalog():
        dockerfile = REPO_ROOT / "containers" / image.folder / "Dockerfile"
        text = dockerfile.read_text()
        assert "ARG BASE_IMAGE=" in text and "FROM ${BASE_IMAGE}" in text
        assert "# syntax" not in text  # the classic builder, and nothing to pull
        assert (REPO_ROOT / "containers" / image.folder / "requirements.txt").is_file()
        assert image.tag.startswith("smlocal/") and "amazonaws" not in image.tag
        assert find_image(image.name) is image and find_image(image.tag) is image
        # the URIs it lists as served are the ones it maps
        for uri in image.served_uris("123456789012", "eu-west-1"):
            assert local_tag(uri) == image.tag, uri
    assert find_image("tensorflow") is None


def test_the_version_a_uri_names_is_kept_for_version_dependent_behaviour():
    assert image_catalog.aws_version(
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.0-1-arm64-cpu-py3") == "1.0-1"
    assert image_catalog.aws_version(
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:0.90-2-cpu-py3") == "0.90-2"
    assert image_catalog.aws_version("685385470294.dkr.ecr.eu-west-1.amazonaws.com/xgboost:1") == "1"
    assert image_catalog.aws_version("123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1.2-1") is None
    assert image_catalog.aws_version("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
                                     "2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker") == "2.5.1"


def test_missing_image_reason_names_the_build_command():
    reason = missing_image_reason("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert "smlocal images build sklearn" in reason
    assert "smlocal/sagemaker-scikit-learn:1.2-1" in reason
    reason = missing_image_reason("246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1")
    assert "smlocal images build xgboost" in reason
    reason = missing_image_reason("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311")
    assert "smlocal images build pytorch" in reason and "smlocal/sagemaker-pytorch:2.5-cpu-py311" in reason
    other = missing_image_reason("123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1")
    assert "smlocal images build" not in other and "mine:1" in other
    assert len(reason) < 1024  # FailureReason's limit


def test_build_names_resolve_and_unknown_names_say_what_exists():
    assert [image.name for image in image_build.resolve_names([])] == ["sklearn", "xgboost", "pytorch"]
    assert [image.name for image in image_build.resolve_names(["xgboost"])] == ["xgboost"]
    with pytest.raises(image_build.ImageBuildError, match="smlocal builds: sklearn, xgboost, pytorch"):
        image_build.resolve_names(["tensorflow"])


def test_the_catalog_module_is_pure():
    source = Path(image_catalog.__file__).read_text()
    for word in ("import os", "import subprocess", "import docker", "open("):
        assert word not in source
