"""The container contract (smlocal.runtime.contract) against what SageMaker and its toolkit produce.

Golden values were produced by the real toolkit, not written by hand: ``sagemaker-training`` 4.8.4
(``environment.Environment().to_env_vars()`` / ``to_cmd_args()`` on the files this module writes,
and ``process.ProcessRunner(...).run()`` on failing scripts), and 5.1.4 for ``hardened``. Sources
of each fact:

* aws/sagemaker-training-toolkit ``src/sagemaker_training/environment.py`` (Environment properties,
  ``to_env_vars``, defaults ``homogeneousCluster``/``local``/``eth0``, os.environ writes),
  ``mapping.py`` (env encoding, ``to_cmd_args``), ``params.py`` (reserved hyperparameters),
  ``process.py`` (``_create_command``, ``watch``, ``check_error``), ``errors.py``
  (``_CalledProcessError.__str__``), ``_entry_point_type.py``, ``__init__.py`` (error markers),
  ``trainer.py`` (exit code 1, failure file), ``files.py`` (failure file, first 1024 characters).
* aws/sagemaker-scikit-learn-container ``src/sagemaker_sklearn_container/training.py``
  (``capture_error`` left False), ``docker/1.2-1/final/Dockerfile.cpu`` (SAGEMAKER_TRAINING_MODULE);
  aws/sagemaker-pytorch-training-toolkit ``training.py`` (``capture_error=True``).
* SageMaker developer guide: your-algorithms-training-algo-running-container.md (TRAINING_JOB_NAME,
  TRAINING_JOB_ARN, inputdataconfig.json, FastFile written as File),
  your-algorithms-training-algo-dockerfile.md (``docker run image train``),
  build-your-own-processing-container.md (processingjobconfig.json, resourceconfig.json,
  LocalPath must begin with /opt/ml/processing/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from smlocal.errors import ValidationError
from smlocal.runtime import contract, toolkit_failure

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SKLEARN_ENV = {"SAGEMAKER_TRAINING_MODULE": "sagemaker_sklearn_container.training:main"}
SOURCE = "s3://b/code/sk-job-1/source/sourcedir.tar.gz"
# What SDK v2 SKLearn(entry_point="train.py", hyperparameters={"epochs": 3, "lr": 0.1, "name": "x"})
# sends; test_sdk_hyperparameters checks it against the installed SDK.
SDK_HPS = {
    "epochs": "3", "lr": "0.1", "name": '"x"',
    "sagemaker_submit_directory": json.dumps(SOURCE), "sagemaker_program": '"train.py"',
    "sagemaker_container_log_level": "20", "sagemaker_job_name": '"sk-job-1"',
    "sagemaker_region": '"us-east-1"',
}
PY = "/miniconda3/bin/python"
TRACEBACK = ('Traceback (most recent call last):\n  File "/opt/ml/code/train.py", line 6, in <module>\n'
             '    f()\n  File "/opt/ml/code/train.py", line 5, in f\n'
             '    raise ValueError("boom: bad value")\nValueError: boom: bad value\n')


def training_request(**overrides):
    request = {
        "TrainingJobName": "sk-job-1",
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/R",
        "HyperParameters": dict(SDK_HPS),
        "InputDataConfig": [
            {"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://b/data/train",
                "S3DataDistributionType": "FullyReplicated"}}},
            {"ChannelName": "test", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://b/data/test",
                "S3DataDistributionType": "FullyReplicated"}}},
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "Environment": {"MY_FLAG": "1"},
    }
    request.update(overrides)
    return request


def layout(request=None, **kwargs):
    kwargs = {"job_name": "sk-job-1", "region": "us-east-1", "num_cpus": 2, "job_arn": "arn:x",
              "image_env": SKLEARN_ENV, **kwargs}
    return contract.training_layout(request or training_request(), **kwargs)


# Produced by sagemaker-training 4.8.4 for training_request() (paths rebased onto /opt/ml).
TOOLKIT_ENV = {
    "CURRENT_HOST": "algo-1",
    "SAGEMAKER_JOB_NAME": "sk-job-1",
    "SAGEMAKER_REGION": "us-east-1",
    "SM_CHANNELS": '["test","train"]',
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CURRENT_HOST": "algo-1",
    "SM_CURRENT_INSTANCE_GROUP": "homogeneousCluster",
    "SM_CURRENT_INSTANCE_GROUP_HOSTS": '["algo-1"]',
    "SM_CURRENT_INSTANCE_TYPE": "ml.m5.large",
    "SM_DISTRIBUTION_INSTANCE_GROUPS": "[]",
    "SM_FRAMEWORK_MODULE": "sagemaker_sklearn_container.training:main",
    "SM_FRAMEWORK_PARAMS": "{}",
    "SM_HOSTS": '["algo-1"]',
    "SM_HPS": '{"epochs":3,"lr":0.1,"name":"x"}',
    "SM_HP_EPOCHS": "3",
    "SM_HP_LR": "0.1",
    "SM_HP_NAME": "x",
    "SM_INPUT_CONFIG_DIR": "/opt/ml/input/config",
    "SM_INPUT_DATA_CONFIG": '{"test":{"RecordWrapperType":"None","S3DistributionType":"FullyReplicated",'
                            '"TrainingInputMode":"File"},"train":{"ContentType":"text/csv",'
                            '"RecordWrapperType":"None","S3DistributionType":"FullyReplicated",'
                            '"TrainingInputMode":"File"}}',
    "SM_INPUT_DIR": "/opt/ml/input",
    "SM_INSTANCE_GROUPS": '["homogeneousCluster"]',
    "SM_INSTANCE_GROUPS_DICT": '{"homogeneousCluster":{"hosts":["algo-1"],"instance_group_name":'
                               '"homogeneousCluster","instance_type":"ml.m5.large"}}',
    "SM_IS_HETERO": "false",
    "SM_LOG_LEVEL": "20",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_MODULE_DIR": SOURCE,
    "SM_MODULE_NAME": "train",
    "SM_NETWORK_INTERFACE_NAME": "eth0",
    "SM_NUM_CPUS": "2",
    "SM_NUM_GPUS": "0",
    "SM_NUM_NEURONS": "0",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_OUTPUT_DIR": "/opt/ml/output",
    "SM_OUTPUT_INTERMEDIATE_DIR": "/opt/ml/output/intermediate",
    "SM_RESOURCE_CONFIG": '{"current_group_name":"homogeneousCluster","current_host":"algo-1",'
                          '"current_instance_type":"ml.m5.large","hosts":["algo-1"],"instance_groups":'
                          '[{"hosts":["algo-1"],"instance_group_name":"homogeneousCluster",'
                          '"instance_type":"ml.m5.large"}],"network_interface_name":"eth0",'
                          '"topology":null}',
    "SM_TRAINING_ENV": (
        '{"additional_framework_parameters":{},"channel_input_dirs":{"test":"/opt/ml/input/data/test",'
        '"train":"/opt/ml/input/data/train"},"current_host":"algo-1","current_instance_group":'
        '"homogeneousCluster","current_instance_group_hosts":["algo-1"],"current_instance_type":'
        '"ml.m5.large","distribution_hosts":[],"distribution_instance_groups":[],"framework_module":'
        '"sagemaker_sklearn_container.training:main","hosts":["algo-1"],"hyperparameters":{"epochs":3,'
        '"lr":0.1,"name":"x"},"input_config_dir":"/opt/ml/input/config","input_data_config":{"test":'
        '{"RecordWrapperType":"None","S3DistributionType":"FullyReplicated","TrainingInputMode":"File"},'
        '"train":{"ContentType":"text/csv","RecordWrapperType":"None","S3DistributionType":'
        '"FullyReplicated","TrainingInputMode":"File"}},"input_dir":"/opt/ml/input","instance_groups":'
        '["homogeneousCluster"],"instance_groups_dict":{"homogeneousCluster":{"hosts":["algo-1"],'
        '"instance_group_name":"homogeneousCluster","instance_type":"ml.m5.large"}},"is_hetero":false,'
        '"is_master":true,"is_modelparallel_enabled":null,"is_smddpmprun_installed":false,'
        '"is_smddprun_installed":false,"job_name":"sk-job-1","log_level":20,"master_hostname":"algo-1",'
        '"model_dir":"/opt/ml/model","module_dir":"' + SOURCE + '","module_name":"train",'
        '"network_interface_name":"eth0","num_cpus":2,"num_gpus":0,"num_neurons":0,"output_data_dir":'
        '"/opt/ml/output/data","output_dir":"/opt/ml/output","output_intermediate_dir":'
        '"/opt/ml/output/intermediate","resource_config":{"current_group_name":"homogeneousCluster",'
        '"current_host":"algo-1","current_instance_type":"ml.m5.large","hosts":["algo-1"],'
        '"instance_groups":[{"hosts":["algo-1"],"instance_group_name":"homogeneousCluster",'
        '"instance_type":"ml.m5.large"}],"network_interface_name":"eth0","topology":null},'
        '"user_entry_point":"train.py"}'),
    "SM_USER_ARGS": '["--epochs","3","--lr","0.1","--name","x"]',
    "SM_USER_ENTRY_POINT": "train.py",
}


# -- the SDK's hyperparameters and their decoding ------------------------------------------------


@pytest.fixture(scope="module")
def sdk_hyperparameters():
    """Hyperparameters from the real SDK v2, offline: an S3 source_dir means nothing is uploaded."""
    import sagemaker  # SDK v2 is a test dependency: never skipped

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                           "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}.items():
            mp.setenv(key, value)
        import boto3
        from sagemaker.sklearn import SKLearn

        session = sagemaker.session.Session(boto_session=boto3.Session(region_name="us-east-1"),
                                            default_bucket="b")
        estimator = SKLearn(entry_point="train.py", source_dir=SOURCE, framework_version="1.2-1",
                            hyperparameters={"epochs": 3, "lr": 0.1, "name": "x"},
                            role="arn:aws:iam::123456789012:role/R", instance_type="ml.m5.large",
                            instance_count=1, sagemaker_session=session,
                            code_location="s3://b/code", output_path="s3://b/out")
        estimator._prepare_for_training(job_name="sk-job-1")
        return estimator.hyperparameters()


def test_sdk_hyperparameters_are_what_the_tests_use(sdk_hyperparameters):
    assert sdk_hyperparameters == SDK_HPS


def test_decode_hyperparameters_json_or_raw():
    decoded = contract.decode_hyperparameters(
        {"a": "3", "b": '"x"', "c": "adam", "d": "true", "e": '{"k": [1, 2]}', "f": "1e-05", "g": ""})
    assert decoded == {"a": 3, "b": "x", "c": "adam", "d": True, "e": {"k": [1, 2]}, "f": 1e-05, "g": ""}
    assert contract.decode_hyperparameters(None) == {}


def test_framework_params_from_sdk(sdk_hyperparameters):
    params = contract.framework_params(sdk_hyperparameters)
    assert params == contract.FrameworkParams(
        program="train.py", submit_directory=SOURCE, region="us-east-1", container_log_level=20,
        job_name="sk-job-1", enable_cloudwatch_metrics=None, s3_output=None, additional={})


def test_framework_params_defaults_and_additional():
    params = contract.framework_params({"sagemaker_mpi_enabled": "true", "epochs": "1",
                                        "sagemaker_s3_output": '"s3://b/x"'})
    assert params.program is None and params.container_log_level == 20
    assert params.additional == {"sagemaker_mpi_enabled": True}
    assert params.s3_output == "s3://b/x"


# -- training: files and directories -------------------------------------------------------------


def test_training_config_files():
    result = layout()
    assert json.loads(result.files["input/config/hyperparameters.json"]) == SDK_HPS
    assert json.loads(result.files["input/config/resourceconfig.json"]) == {
        "current_host": "algo-1", "current_instance_type": "ml.m5.large",
        "current_group_name": "homogeneousCluster", "hosts": ["algo-1"],
        "instance_groups": [{"instance_group_name": "homogeneousCluster",
                             "instance_type": "ml.m5.large", "hosts": ["algo-1"]}],
        "network_interface_name": "eth0", "topology": None}
    assert json.loads(result.files["input/config/inputdataconfig.json"]) == {
        "train": {"ContentType": "text/csv", "TrainingInputMode": "File",
                  "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"},
        "test": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                 "RecordWrapperType": "None"}}
    assert "input/config/checkpointconfig.json" not in result.files
    assert set(result.dirs) == {"model", "output", "output/data", "input/config", "input/data", "code",
                                "input/data/train", "input/data/test"}
    assert result.cwd == "code" and result.program == "train.py" and result.entrypoint == ()
    assert result.inputs[0] == contract.DataBinding("train", "input/data/train", "s3://b/data/train")


def test_inputdataconfig_modes_and_distribution():
    request = training_request(InputDataConfig=[
        {"ChannelName": "a", "InputMode": "FastFile", "RecordWrapperType": "RecordIO",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/a",
                                         "S3DataDistributionType": "ShardedByS3Key"}}},
        {"ChannelName": "b", "InputMode": "Pipe", "CompressionType": "Gzip",
         "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b/m"}}},
        {"ChannelName": "c", "DataSource": {"FileSystemDataSource": {
            "FileSystemId": "fs-1", "FileSystemAccessMode": "ro", "FileSystemType": "EFS",
            "DirectoryPath": "/d"}}},
    ])
    result = layout(request)
    assert json.loads(result.files["input/config/inputdataconfig.json"]) == {
        "a": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key",
              "RecordWrapperType": "RecordIO"},
        "b": {"TrainingInputMode": "Pipe", "S3DistributionType": "FullyReplicated",
              "RecordWrapperType": "None"},
        "c": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
              "RecordWrapperType": "None"}}
    assert result.inputs == (
        contract.DataBinding("a", "input/data/a", "s3://b/a", "S3Prefix", "ShardedByS3Key", "FastFile"),
        contract.DataBinding("b", "input/data/b", "s3://b/m", "ManifestFile", "FullyReplicated", "Pipe",
                             "Gzip"),
        contract.DataBinding("c", "input/data/c", None))


def test_checkpoint_config_inside_and_outside_opt_ml():
    inside = layout(training_request(CheckpointConfig={"S3Uri": "s3://b/ckpt"}))
    assert json.loads(inside.files["input/config/checkpointconfig.json"]) == {
        "LocalPath": "/opt/ml/checkpoints", "S3Uri": "s3://b/ckpt"}
    assert "checkpoints" in inside.dirs and inside.extra_dirs == ()
    assert inside.outputs == (contract.DataBinding("checkpoints", "checkpoints", "s3://b/ckpt",
                                                   mode="Continuous"),)
    outside = layout(training_request(CheckpointConfig={"S3Uri": "s3://b/c", "LocalPath": "/tmp/ck"}))
    assert outside.extra_dirs == ("/tmp/ck",) and "/tmp/ck" not in outside.dirs
    assert outside.outputs[0].path == "/tmp/ck"


# -- training: environment and arguments ---------------------------------------------------------


def test_training_env_is_the_toolkits():
    result = layout()
    toolkit_part = {k: v for k, v in result.env.items() if k in TOOLKIT_ENV}
    assert toolkit_part == TOOLKIT_ENV
    assert set(result.env) - set(TOOLKIT_ENV) == {
        "MY_FLAG", "SAGEMAKER_TRAINING_MODULE", "TRAINING_JOB_NAME", "TRAINING_JOB_ARN", "PYTHONPATH"}
    assert result.env["TRAINING_JOB_NAME"] == "sk-job-1" and result.env["TRAINING_JOB_ARN"] == "arn:x"
    assert result.env["MY_FLAG"] == "1" and result.env["PYTHONPATH"] == "/opt/ml/code"


def test_training_args_sorted_and_rendered():
    assert layout().args == ("--epochs", "3", "--lr", "0.1", "--name", "x")
    hps = {"b": '{"z": 1, "a": [1, 2]}', "flag": "true", "rate": "1e-05", "nothing": "null",
           "lst": "[1, 2]", "raw": "a b", "_tuning_objective_metric": '"acc"',
           "sagemaker_program": '"train.py"'}
    result = layout(training_request(HyperParameters=hps))
    assert result.args == ("-b", "a=[1, 2],z=1", "--flag", "True", "--lst", "[1, 2]",
                           "--nothing", "", "--rate", "1e-05", "--raw", "a b")
    assert json.loads(result.env["SM_HPS"]) == {"b": {"z": 1, "a": [1, 2]}, "flag": True,
                                                 "lst": [1, 2], "nothing": None, "raw": "a b",
                                                 "rate": 1e-05}
    assert result.env["SM_HP_B"] == '{"a":[1,2],"z":1}' and result.env["SM_HP_NOTHING"] == ""
    assert result.env["SM_HP_FLAG"] == "true" and "SM_HP__TUNING_OBJECTIVE_METRIC" not in result.env


def test_env_value_encoding():
    assert contract.env_value("plain") == "plain"
    assert contract.env_value(None) == ""
    assert contract.env_value(b"\xe9") == "\xe9"
    assert contract.env_value(False) == "false"
    assert contract.env_value({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'


def test_hyphenated_hyperparameter_names_keep_their_hyphen():
    result = layout(training_request(HyperParameters={"batch-size": "32", "sagemaker_program": '"t.py"'}))
    assert result.env["SM_HP_BATCH-SIZE"] == "32" and result.args == ("--batch-size", "32")
    assert result.env["SM_MODULE_NAME"] == "t"


def test_env_precedence():
    request = training_request(Environment={"A": "request", "SM_MODEL_DIR": "mine",
                                            "TRAINING_JOB_NAME": "spoof", "PYTHONPATH": "/extra"})
    env = layout(request, image_env={"A": "image", "B": "image", **SKLEARN_ENV}).env
    assert env["A"] == "request" and env["B"] == "image"
    assert env["SM_MODEL_DIR"] == "/opt/ml/model" and env["TRAINING_JOB_NAME"] == "sk-job-1"
    assert env["PYTHONPATH"] == "/opt/ml/code:/extra"


def test_no_image_module_and_base_dir():
    result = layout(image_env={}, base_dir="/srv/job/opt/ml")
    assert result.env["SM_FRAMEWORK_MODULE"] == ""
    assert json.loads(result.env["SM_TRAINING_ENV"])["framework_module"] is None
    assert result.env["SM_CHANNEL_TRAIN"] == "/srv/job/opt/ml/input/data/train"
    assert result.env["PYTHONPATH"] == "/srv/job/opt/ml/code"
    assert result.dirs[0] == "model"  # dirs stay relative to the root


def test_sagemaker_program_env_wins_and_default_arn():
    request = training_request(Environment={"SAGEMAKER_PROGRAM": "other.py"})
    result = contract.training_layout(request, job_name="Sk-Job-1", region="eu-west-1", num_cpus=1)
    assert result.program == "other.py" and result.env["SM_MODULE_NAME"] == "other"
    assert result.env["TRAINING_JOB_ARN"] == "arn:aws:sagemaker:eu-west-1:123456789012:training-job/sk-job-1"
    assert result.env["SAGEMAKER_REGION"] == "us-east-1"  # the sagemaker_region hyperparameter


def test_sklearn_image_env_and_arn_from_the_stored_job():
    request = training_request(TrainingJobArn="arn:aws:sagemaker:us-east-1:1:training-job/sk-job-1")
    result = contract.training_layout(request, job_name="sk-job-1", region="us-east-1", num_cpus=1,
                                      image_env=contract.SKLEARN_IMAGE_ENV)
    assert result.env["TRAINING_JOB_ARN"] == "arn:aws:sagemaker:us-east-1:1:training-job/sk-job-1"
    assert result.env["SM_FRAMEWORK_MODULE"] == "sagemaker_sklearn_container.training:main"
    assert result.env["SM_INPUT_TRAINING_CONFIG_FILE"] == "/opt/ml/input/config/hyperparameters.json"
    assert result.env["PYTHONUNBUFFERED"] == "1" and result.env["SM_MODEL_DIR"] == "/opt/ml/model"


def test_custom_image_gets_only_the_aws_environment():
    request = training_request(HyperParameters={"epochs": "3"})
    result = contract.training_layout(request, job_name="j", region="us-east-1", num_cpus=1,
                                      job_arn="arn:x", image_env={"IMG": "1"})
    assert result.env == {"IMG": "1", "MY_FLAG": "1", "TRAINING_JOB_NAME": "j", "TRAINING_JOB_ARN": "arn:x"}
    assert result.args == ("train",) and result.program is None and result.cwd is None
    spec = {"TrainingImage": "x", "ContainerEntrypoint": ["python", "run.py"], "ContainerArguments": ["--a"]}
    custom = layout(training_request(HyperParameters={}, AlgorithmSpecification=spec))
    assert custom.entrypoint == ("python", "run.py") and custom.args == ("--a",)
    spec.pop("ContainerArguments")
    assert layout(training_request(HyperParameters={}, AlgorithmSpecification=spec)).args == ()


def test_multi_host_and_heterogeneous_cluster():
    hps = {**SDK_HPS, "sagemaker_mpi_enabled": "true"}
    resources = {"InstanceGroups": [
        {"InstanceGroupName": "cpu", "InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
        {"InstanceGroupName": "gpu", "InstanceType": "ml.p3.2xlarge", "InstanceCount": 2}]}
    result = layout(training_request(HyperParameters=hps, ResourceConfig=resources),
                    current_host="algo-3", hosts=("algo-1", "algo-2", "algo-3"))
    config = json.loads(result.env["SM_RESOURCE_CONFIG"])
    assert config["current_group_name"] == "gpu" and config["current_instance_type"] == "ml.p3.2xlarge"
    assert config["instance_groups"][1]["hosts"] == ["algo-2", "algo-3"]
    env = json.loads(result.env["SM_TRAINING_ENV"])
    assert env["is_hetero"] is True and env["distribution_instance_groups"] == ["gpu"]
    assert env["distribution_hosts"] == ["algo-2", "algo-3"] and env["master_hostname"] == "algo-2"
    assert env["is_master"] is False
    assert result.env["SM_FRAMEWORK_PARAMS"] == '{"sagemaker_mpi_enabled":true}'
    assert result.env["SM_CURRENT_INSTANCE_GROUP_HOSTS"] == '["algo-2","algo-3"]'
    many = layout(hosts=tuple(f"algo-{i}" for i in (2, 10, 1)), current_host="algo-10")
    assert json.loads(many.env["SM_HOSTS"]) == ["algo-1", "algo-10", "algo-2"]
    assert json.loads(many.env["SM_TRAINING_ENV"])["master_hostname"] == "algo-1"


def test_training_validation():
    channel = training_request()["InputDataConfig"][0]
    with pytest.raises(ValidationError) as err:
        layout(training_request(InputDataConfig=[channel, dict(channel)]))
    assert err.value.code == "ValidationException" and "train" in err.value.message
    fast = {**channel, "InputMode": "FastFile", "DataSource": {"S3DataSource": {
        "S3DataType": "ManifestFile", "S3Uri": "s3://b/m"}}}
    with pytest.raises(ValidationError):
        layout(training_request(InputDataConfig=[fast]))


# -- the command line ----------------------------------------------------------------------------

ARGS = ["--epochs", "3", "--name", "a b", "--q", '"x"']


def test_python_script_command_per_toolkit_mode():
    assert contract.script_command("train.py", ARGS, python=PY) == (
        PY, "train.py", "--epochs", "3", "--name", "a b", "--q", "x")  # 4.x strips the last word
    assert contract.script_command("train.py", ARGS, python=PY, capture_error=True) == (
        "/bin/sh", "-c", f'{PY} train.py --epochs 3 --name a b --q "x"')
    assert contract.script_command("train.py", ARGS, python=PY, hardened=True) == (
        PY, "--", "train.py", *ARGS)
    assert contract.script_command("train.py", [], python=PY) == (PY, "train.py")


def test_shell_and_other_commands():
    line = "./train.sh --epochs 3 --name 'a b' --q '\"x\"'"
    assert contract.script_command("train.sh", ARGS, python=PY) == ("/bin/sh", "-c", line)
    assert contract.script_command("train.sh", ARGS, python=PY, capture_error=True) == (
        "/bin/sh", "-c", f'/bin/sh -c "{line}"')
    assert contract.script_command("train.sh", ARGS, python=PY, hardened=True) == ("/bin/sh", "-c", line)
    assert contract.script_command("run", [], python=PY) == ("/bin/sh", "-c", "./run ")
    assert contract.script_command("t.sh", [], python=PY, package=True) == ("/bin/sh", "-c", "./t.sh ")


def test_package_command():
    assert contract.script_command("train.py", ["--a", "1"], python=PY, package=True) == (
        PY, "-m", "train", "--a", "1")
    assert contract.script_command("my.pyx.py", [], python=PY, package=True) == (PY, "-m", "myx")
    assert contract.script_command("my.pyx.py", [], python=PY, package=True, hardened=True) == (
        PY, "-m", "my.pyx")


# -- failure reasons -----------------------------------------------------------------------------


def test_error_message_from_traceback():
    assert toolkit_failure.error_message(TRACEBACK) == ('raise ValueError("boom: bad value")\n'
                                                        " ValueError: boom: bad value")
    assert toolkit_failure.error_message("all fine\n") == ""
    assert toolkit_failure.error_message("[1,0]<stderr>:KeyError: 'k'\n") == "KeyError: 'k'"
    assert toolkit_failure.error_message("", stdout="note: a KeyError\nmore\n") == "note: a KeyError\n more"


def test_failure_message_sklearn_image_has_no_error_message():
    command = contract.script_command("train.py", ["--epochs", "3"], python=PY)
    assert toolkit_failure.toolkit_failure_message(1, command, stderr=TRACEBACK) == (
        f'ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""\nCommand "{PY} train.py --epochs 3"')
    assert toolkit_failure.script_failure_reason(1, TRACEBACK, command) == (
        f'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""\n'
        f'Command "{PY} train.py --epochs 3", exit code: 1')


def test_failure_message_when_the_image_captures_stderr():
    # Golden from sagemaker-training 4.8.4 running a failing train.py with capture_error=True.
    command = contract.script_command("train.py", ARGS, python=PY, capture_error=True)
    stdout = "starting; a KeyError-free line\n"
    stderr = ('warning: something\nTraceback (most recent call last):\n  File "/opt/ml/code/train.py", '
              'line 6, in <module>\n    f()\n  File "/opt/ml/code/train.py", line 5, in f\n'
              '    raise ValueError("boom: bad value")\nValueError: boom: bad value\n')
    assert toolkit_failure.toolkit_failure_message(1, command, stderr=stderr, stdout=stdout, capture_error=True) == (
        'ExecuteUserScriptError:\nExitCode 1\nErrorMessage "starting; a KeyError-free line\n'
        ' raise ValueError("boom: bad value")\n ValueError: boom: bad value"\n'
        f'Command "{PY} train.py --epochs 3 --name a b --q "x""')
    reason = toolkit_failure.script_failure_reason(1, stderr, command, capture_error=True)
    assert reason == ('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage '
                      '"raise ValueError("boom: bad value")\n ValueError: boom: bad value"\n'
                      f'Command "{PY} train.py --epochs 3 --name a b --q "x"", exit code: 1')


def test_failure_message_of_shell_scripts():
    # Goldens from sagemaker-training 4.8.4 running a failing train.sh (exit 3).
    stderr = "ls: cannot access 'x': No such file or directory\nRuntimeError: from shell\n"
    plain = contract.script_command("train.sh", ARGS, python=PY)
    assert toolkit_failure.toolkit_failure_message(3, plain, stderr=stderr) == (
        'ExecuteUserScriptError:\nExitCode 3\nErrorMessage ""\n'
        "Command \"/bin/sh -c ./train.sh --epochs 3 --name 'a b' --q '\"x\"'\"")
    captured = contract.script_command("train.sh", ARGS, python=PY, capture_error=True)
    assert toolkit_failure.toolkit_failure_message(3, captured, stderr=stderr, capture_error=True) == (
        'ExecuteUserScriptError:\nExitCode 3\nErrorMessage "RuntimeError: from shell"\n'
        "Command \"/bin/sh -c \"./train.sh --epochs 3 --name 'a b' --q '\"x\"'\"\"")
    hardened = contract.script_command("train.py", ["--a", "1"], python=PY, hardened=True)
    assert toolkit_failure.toolkit_failure_message(2, hardened, stderr="OSError: x", capture_error=True,
                                                   hardened=True).endswith(f'Command "{PY} -- train.py --a 1"')


def test_failure_extra_info_and_length_limit():
    command = (PY, "train.py")
    oom = toolkit_failure.toolkit_failure_message(137, command)
    assert oom == (f'ExecuteUserScriptError:\nExitCode 137\nErrorMessage ""\n'
                   f'ExtraInfo "OutOfMemory: Process killed by SIGKILL (signal 9)"\nCommand "{PY} train.py"')
    xla = toolkit_failure.toolkit_failure_message(1, ("/bin/sh", "-c", "x"), capture_error=True,
                                                  stderr="RuntimeError at torch_xla/core.py\n")
    assert 'ExtraInfo "SMTrainingCompiler Error: Error occurred in SMTrainingCompiler."' in xla
    long = toolkit_failure.script_failure_reason(1, "ValueError: " + "x" * 5000, ("/bin/sh", "-c", "c"),
                                                 capture_error=True)
    assert len(long) == 1024 and long.startswith("AlgorithmError: ExecuteUserScriptError:")
    assert long.endswith(", exit code: 1")


def test_contract_runs_a_real_script(tmp_path):
    """The layout written out and the command run: the script sees what the toolkit gives it."""
    root = tmp_path / "opt" / "ml"
    result = layout(base_dir=str(root))
    for rel in result.dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, text in result.files.items():
        (root / rel).write_text(text)
    (root / "code" / "train.py").write_text(
        "import argparse, json, os\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--epochs', type=int); p.add_argument('--lr', type=float)\n"
        "p.add_argument('--name')\n"
        "a = p.parse_args()\n"
        "json.dump({'args': vars(a), 'model': os.environ['SM_MODEL_DIR'],\n"
        "           'hps': json.load(open(os.environ['SM_INPUT_CONFIG_DIR'] + '/hyperparameters.json')),\n"
        "           'cwd': os.getcwd()}, open(os.path.join(os.environ['SM_MODEL_DIR'], 'out.json'), 'w'))\n"
        "raise ValueError('boom')\n")
    command = contract.script_command(result.program, result.args, python=sys.executable, capture_error=True)
    env = {**result.env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run(command, cwd=root / result.cwd, env=env, capture_output=True, text=True)
    seen = json.loads((root / "model" / "out.json").read_text())
    assert seen["args"] == {"epochs": 3, "lr": 0.1, "name": "x"} and seen["hps"] == SDK_HPS
    assert seen["model"] == str(root / "model") and seen["cwd"] == str(root / "code")
    reason = toolkit_failure.script_failure_reason(proc.returncode, proc.stderr, command, capture_error=True)
    assert reason.startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "raise ')
    assert "ValueError: boom\"\nCommand" in reason


# -- processing ----------------------------------------------------------------------------------


def processing_request(**overrides):
    request = {
        "ProcessingJobName": "prep-1",
        "RoleArn": "arn:aws:iam::123456789012:role/R",
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prep.py"],
                             "ContainerArguments": ["--split", "0.2"]},
        "Environment": {"STAGE": "dev"},
        "ProcessingInputs": [
            {"InputName": "input-1", "AppManaged": False, "S3Input": {
                "S3Uri": "s3://b/raw", "LocalPath": "/opt/ml/processing/input", "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "ShardedByS3Key"}},
            {"InputName": "code", "S3Input": {
                "S3Uri": "s3://b/code/prep.py", "LocalPath": "/opt/ml/processing/input/code",
                "S3DataType": "S3Prefix"}},
        ],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "train", "AppManaged": False, "S3Output": {
                "S3Uri": "s3://b/train", "LocalPath": "/opt/ml/processing/train",
                "S3UploadMode": "EndOfJob"}},
        ]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 2, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    request.update(overrides)
    return request


def processing(request=None, **kwargs):
    kwargs = {"job_name": "prep-1", "current_host": "algo-2", "hosts": ("algo-1", "algo-2"),
              "num_cpus": 2, "job_arn": "arn:p", **kwargs}
    return contract.processing_layout(request or processing_request(), **kwargs)


def test_processing_job_config_shape():
    result = processing()
    assert json.loads(result.files["config/processingjobconfig.json"]) == {
        "ProcessingJobArn": "arn:p",
        "ProcessingJobName": "prep-1",
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prep.py"],
                             "ContainerArguments": ["--split", "0.2"]},
        "Environment": {"STAGE": "dev"},
        "ProcessingInputs": [
            {"InputName": "input-1", "AppManaged": False, "S3Input": {
                "LocalPath": "/opt/ml/processing/input", "S3Uri": "s3://b/raw",
                "S3DataDistributionType": "ShardedByS3Key", "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3CompressionType": "None", "S3DownloadMode": "StartOfJob"}},
            {"InputName": "code", "S3Input": {
                "LocalPath": "/opt/ml/processing/input/code", "S3Uri": "s3://b/code/prep.py",
                "S3DataDistributionType": "FullyReplicated", "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3CompressionType": "None", "S3DownloadMode": "StartOfJob"}},
        ],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "train", "AppManaged": False, "S3Output": {
                "LocalPath": "/opt/ml/processing/train", "S3Uri": "s3://b/train",
                "S3UploadMode": "EndOfJob"}}], "KmsKeyId": None},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 2, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30, "VolumeKmsKeyId": None}},
        "RoleArn": "arn:aws:iam::123456789012:role/R",
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    assert json.loads(result.files["config/resourceconfig.json"]) == {
        "current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}


def test_processing_dirs_env_args():
    result = processing(image_env={"STAGE": "image", "IMG": "1"})
    assert result.dirs == ("config", "output", "processing/input", "processing/input/code",
                           "processing/train")
    assert result.extra_dirs == () and result.cwd is None and result.program is None
    assert result.env == {"STAGE": "dev", "IMG": "1"}
    assert result.args == ("--split", "0.2")
    assert result.entrypoint == ("python3", "/opt/ml/processing/input/code/prep.py")
    assert result.inputs[0] == contract.DataBinding("input-1", "processing/input", "s3://b/raw",
                                                    distribution="ShardedByS3Key")
    assert result.outputs == (contract.DataBinding("train", "processing/train", "s3://b/train",
                                                   mode="EndOfJob"),)


def test_processing_minimal_request():
    request = {"ProcessingJobName": "p", "RoleArn": "r", "AppSpecification": {"ImageUri": "img"},
               "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.t3.medium",
                                                         "VolumeSizeInGB": 1}}}
    result = processing(request, job_name="P-1", job_arn=None, region="eu-west-1")
    config = json.loads(result.files["config/processingjobconfig.json"])
    assert config["ProcessingJobArn"] == "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/p-1"
    stored = processing({**request, "ProcessingJobArn": "arn:stored"}, job_arn=None)
    assert json.loads(stored.files["config/processingjobconfig.json"])["ProcessingJobArn"] == "arn:stored"
    assert config["AppSpecification"] == {"ImageUri": "img", "ContainerEntrypoint": None,
                                          "ContainerArguments": None}
    assert config["ProcessingInputs"] == [] and config["ProcessingOutputConfig"] is None
    assert config["Environment"] == {} and config["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert result.env == {} and result.args == () and result.entrypoint == ()


def test_processing_dataset_definition_input():
    dataset = {"AthenaDatasetDefinition": {"Catalog": "c", "Database": "d", "QueryString": "q",
                                           "OutputS3Uri": "s3://b/athena", "OutputFormat": "PARQUET"},
               "LocalPath": "/opt/ml/processing/athena", "DataDistributionType": "ShardedByS3Key",
               "InputMode": "File"}
    inputs = [{"InputName": "q", "DatasetDefinition": dataset}]
    result = processing(processing_request(ProcessingInputs=inputs))
    assert result.inputs == (contract.DataBinding("q", "processing/athena", None,
                                                  distribution="ShardedByS3Key"),)
    config = json.loads(result.files["config/processingjobconfig.json"])
    assert config["ProcessingInputs"] == [{"InputName": "q", "DatasetDefinition": dataset}]


@pytest.mark.parametrize("path", ["/data/in", "/opt/ml/processing", "/opt/ml/model/x", "opt/ml/processing/x"])
def test_processing_local_path_must_be_under_opt_ml_processing(path):
    request = processing_request()
    request["ProcessingInputs"][0]["S3Input"]["LocalPath"] = path
    with pytest.raises(ValidationError) as err:
        processing(request)
    assert "/opt/ml/processing/" in err.value.message and err.value.status == 400
    request = processing_request()
    request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["LocalPath"] = path
    with pytest.raises(ValidationError):
        processing(request)


def test_processing_duplicate_names():
    request = processing_request()
    request["ProcessingInputs"][1]["InputName"] = "input-1"
    with pytest.raises(ValidationError, match="input-1"):
        processing(request)
    request = processing_request()
    outputs = request["ProcessingOutputConfig"]["Outputs"]
    second = {**outputs[0]["S3Output"], "LocalPath": "/opt/ml/processing/b"}
    outputs.append({**outputs[0], "S3Output": second})
    with pytest.raises(ValidationError, match="train"):
        processing(request)


# -- sharding ------------------------------------------------------------------------------------


def test_shard_keys_round_robin_over_sorted_keys():
    keys = [f"data/part-{i:02d}.csv" for i in range(7)]
    shuffled = keys[3:] + keys[:3]
    assert contract.shard_keys(shuffled, 0, 3) == [keys[0], keys[3], keys[6]]
    assert contract.shard_keys(shuffled, 1, 3) == [keys[1], keys[4]]
    assert contract.shard_keys(shuffled, 2, 3) == [keys[2], keys[5]]
    assert contract.shard_keys(keys, 0, 1) == keys
    assert contract.shard_keys(["only"], 1, 2) == []


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_keys(count):
    keys = [f"k/{i}" for i in range(23)]
    shards = [contract.shard_keys(keys, i, count) for i in range(count)]
    flat = [key for shard in shards for key in shard]
    assert sorted(flat) == sorted(keys) and len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("index,count", [(-1, 2), (2, 2), (0, 0)])
def test_shard_keys_rejects_bad_host_index(index, count):
    with pytest.raises(ValueError):
        contract.shard_keys(["a"], index, count)
