"""Image URI → runtime mapping (pure)."""

import pytest

from smlocal.runtime.images import UnresolvableImage, parse_image_uri, resolve_runtime


@pytest.mark.parametrize(
    "uri, framework, version",
    [
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3", "sklearn", "1.2-1"),
        ("662702820516.dkr.ecr.eu-west-3.amazonaws.com/sagemaker-scikit-learn:0.23-1-cpu-py3", "sklearn", "0.23-1"),
        ("763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.0-cpu-py310", "pytorch", "2.0"),
        ("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/tensorflow-training:2.13-cpu-py310", "tensorflow", "2.13"),
    ],
)
def test_framework_images_run_script_mode(uri, framework, version):
    runtime = resolve_runtime(uri, has_entry_point=True)
    assert (runtime.kind, runtime.framework, runtime.version) == ("framework", framework, version)


def test_xgboost_is_algorithm_mode_without_entry_point():
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
    assert resolve_runtime(uri, has_entry_point=False).kind == "algorithm"
    assert resolve_runtime(uri, has_entry_point=False).version == "1.0-1"
    assert resolve_runtime(uri, has_entry_point=True).framework == "xgboost"


def test_sdk_retrieved_uris_resolve_in_every_region():
    from sagemaker import image_uris

    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1"):
        knn = resolve_runtime(image_uris.retrieve("knn", region), has_entry_point=False)
        assert (knn.kind, knn.algorithm) == ("algorithm", "knn")
        xgb = resolve_runtime(image_uris.retrieve("xgboost", region, "1.0-1"), has_entry_point=False)
        assert (xgb.kind, xgb.algorithm, xgb.version) == ("algorithm", "xgboost", "1.0-1")
        sk = resolve_runtime(image_uris.retrieve("sklearn", region, "1.2-1"), has_entry_point=True)
        assert (sk.kind, sk.framework) == ("framework", "sklearn")


def test_unknown_images_name_the_setting():
    with pytest.raises(UnresolvableImage, match=r"\[tool.smlocal.images\]"):
        resolve_runtime("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-trainer:latest", has_entry_point=False)
    with pytest.raises(UnresolvableImage, match="does not emulate the built-in algorithm 'linear-learner'"):
        resolve_runtime("382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1", has_entry_point=False)
    with pytest.raises(UnresolvableImage):
        resolve_runtime("python:3.11", has_entry_point=True)
    assert parse_image_uri("python:3.11") is None
