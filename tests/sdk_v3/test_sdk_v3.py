"""SageMaker SDK v3, unchanged, against smlocal: ModelTrainer, sagemaker-core resources, mlops pipelines."""

from __future__ import annotations

import time

import pytest
from conftest import SKLEARN_IMAGE, model_json, unique


def _trainer(source_dir, session, role, **kwargs):
    from sagemaker.train import ModelTrainer
    from sagemaker.core.training.configs import Compute, SourceCode

    return ModelTrainer(training_image=SKLEARN_IMAGE, sagemaker_session=session, role=role,
                        source_code=SourceCode(source_dir=str(source_dir), entry_script="train.py"),
                        compute=Compute(instance_type="ml.m5.large", instance_count=1),
                        hyperparameters={"alpha": "0.5"}, **kwargs)


def test_model_trainer_runs_source_code_on_a_framework_image(source_dir, session, role, train_uri, boto_session):
    from sagemaker.core.training.configs import InputData

    trainer = _trainer(source_dir, session, role, base_job_name="v3-trainer")
    trainer.train(input_data_config=[InputData(channel_name="train", data_source=train_uri)], wait=True, logs=False)
    job = trainer._latest_training_job
    job.refresh()
    assert job.training_job_status == "Completed", job.failure_reason
    assert job.algorithm_specification.container_entrypoint == ["/bin/bash"]  # v3 runs its own driver script
    assert model_json(boto_session, job.model_artifacts.s3_model_artifacts) == {"alpha": "0.5", "rows": 3}


def _core_job_request(name: str, bucket: str, code_uri: str, **environment) -> dict:
    from sagemaker.core.shapes import AlgorithmSpecification, OutputDataConfig, ResourceConfig, StoppingCondition

    return dict(
        training_job_name=name,
        role_arn=__import__("os").environ["SMLOCAL_ROLE_ARN"],
        algorithm_specification=AlgorithmSpecification(training_image=SKLEARN_IMAGE, training_input_mode="File"),
        hyper_parameters={"sagemaker_program": '"sleep.py"', "sagemaker_submit_directory": f'"{code_uri}"'},
        environment=environment,
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{bucket}/v3-core"),
        resource_config=ResourceConfig(instance_type="ml.m5.large", instance_count=1, volume_size_in_gb=10),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=600),
    )


@pytest.fixture
def sleep_code(boto_session, bucket):
    import io
    import tarfile

    script = b"import os, time\ntime.sleep(float(os.environ['SLEEP']))\nprint('slept')\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("sleep.py")
        info.size = len(script)
        archive.addfile(info, io.BytesIO(script))
    key = f"v3-core/{unique('code')}/sourcedir.tar.gz"
    boto_session.client("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    return f"s3://{bucket}/{key}"


def test_core_training_job_create_get_wait_round_trip(boto_session, bucket, sleep_code):
    """TrainingJob.create/.wait/.get/.get_all; wait polls fast and its timeout passes in real time."""
    from sagemaker.core.resources import TrainingJob
    from sagemaker.core.utils.exceptions import TimeoutExceededError

    name = unique("v3-core")
    job = TrainingJob.create(**_core_job_request(name, bucket, sleep_code, SLEEP="1"), session=boto_session)
    assert job.training_job_name == name
    started = time.monotonic()
    job.wait(poll=30, timeout=300)  # seen Completed long before one 30 s poll
    assert time.monotonic() - started < 20
    fetched = TrainingJob.get(name, session=boto_session)
    assert fetched.training_job_status == "Completed"
    assert fetched.training_job_arn == job.training_job_arn
    assert fetched.hyper_parameters["sagemaker_program"] == '"sleep.py"'
    assert name in [j.training_job_name for j in TrainingJob.get_all(name_contains=name, session=boto_session)]

    slow = TrainingJob.create(**_core_job_request(unique("v3-slow"), bucket, sleep_code, SLEEP="120"),
                              session=boto_session)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutExceededError):
            slow.wait(poll=5, timeout=3)
        assert time.monotonic() - started >= 3
    finally:
        slow.stop()
        slow.wait(timeout=60)
    assert slow.training_job_status == "Stopped"


def test_mlops_pipeline_with_a_training_step_runs(source_dir, boto_session, role, train_uri):
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import TrainingStep
    from sagemaker.core.training.configs import InputData

    pipeline_session = PipelineSession(boto_session=boto_session)
    trainer = _trainer(source_dir, pipeline_session, role, base_job_name="v3-step")
    step = TrainingStep(name="Train",
                        step_args=trainer.train(input_data_config=[InputData(channel_name="train",
                                                                             data_source=train_uri)]))
    pipeline = Pipeline(name=unique("v3-pipeline"), steps=[step], sagemaker_session=pipeline_session)
    pipeline.upsert(role_arn=role)
    execution = pipeline.start()
    execution.wait(delay=540, max_attempts=3)
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
    steps = execution.list_steps()
    assert [(s["StepName"], s["StepStatus"]) for s in steps] == [("Train", "Succeeded")]
    job_arn = steps[0]["Metadata"]["TrainingJob"]["Arn"]
    job = boto_session.client("sagemaker").describe_training_job(TrainingJobName=job_arn.split("/")[-1])
    assert model_json(boto_session, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"alpha": "0.5", "rows": 3}
