"""The pure GPU plan and the instance-type table (no machine access)."""

from __future__ import annotations

import botocore.loaders

from smlocal.runtime import contract, gpus, instance_types


def test_no_gpu_machine_falls_back_or_fails():
    fallback = gpus.plan("ml.g5.xlarge", [])
    assert (fallback.num_gpus, fallback.devices, fallback.failure) == (0, (), None)
    assert fallback.note == "smlocal: ml.g5.xlarge has 1 GPU; this machine has none: running on the CPU (SM_NUM_GPUS=0)"
    assert fallback.environment() == {}
    failing = gpus.plan("ml.p5.48xlarge", [], mode="fail")
    assert failing.failure.startswith("CapacityError: Unable to provision requested ML compute capacity: "
                                      "ml.p5.48xlarge has 8 GPUs; this machine has none")
    unlisted = gpus.plan("ml.g7e.2xlarge", [])  # a GPU family smlocal has no figure for
    assert unlisted.note.startswith("smlocal: ml.g7e.2xlarge has GPUs; this machine has none")


def test_hosts_get_slices_of_the_machines_gpus():
    machine = [str(i) for i in range(8)]
    plans = [gpus.plan("ml.g5.12xlarge", machine, host_index=i) for i in range(3)]
    assert [p.devices for p in plans] == [("0", "1", "2", "3"), ("4", "5", "6", "7"), ("0", "1", "2", "3")]
    assert all(p.num_gpus == 4 and p.note is None for p in plans)
    assert plans[1].environment() == {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    every = gpus.plan("ml.g5.xlarge", machine, devices="all")
    assert every.num_gpus == 8
    short = gpus.plan("ml.p4d.24xlarge", ["0", "1"])
    assert short.num_gpus == 2 and short.note.endswith("this machine has 2: the job sees 2 (SM_NUM_GPUS=2)")
    cpu = gpus.plan("ml.m5.large", machine)  # a CPU type sees no GPU, as on AWS
    assert cpu.num_gpus == 0 and cpu.environment() == {"CUDA_VISIBLE_DEVICES": ""}


def test_the_table_names_only_types_the_service_model_knows():
    shapes = botocore.loaders.Loader().load_service_model("sagemaker", "service-2")["shapes"]
    training = set(shapes["TrainingInstanceType"]["enum"])
    processing = set(shapes["ProcessingInstanceType"]["enum"])
    assert set(instance_types.GPU_COUNTS) <= training | processing
    assert instance_types.gpu_count("ml.p4d.24xlarge") == 8 and instance_types.gpu_count("ml.g6e.12xlarge") == 4
    assert instance_types.gpu_count("ml.g7e.2xlarge") is None  # a GPU family without a figure here
    assert instance_types.gpu_count("ml.c5.18xlarge") == 0 and instance_types.gpu_count("local") == 0
    assert all(instance_types.is_gpu_type(t) for t in training if t.split(".")[1][0] in "gp")


def test_instance_groups_count_and_types_per_host():
    resources = {"InstanceGroups": [{"InstanceGroupName": "a", "InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
                                    {"InstanceGroupName": "b", "InstanceType": "ml.g5.xlarge", "InstanceCount": 2}]}
    assert contract.instance_count(resources) == 3
    assert contract.host_instance_types(resources, ["algo-1", "algo-2", "algo-3"]) == [
        "ml.c5.xlarge", "ml.g5.xlarge", "ml.g5.xlarge"]
    assert contract.instance_count({"InstanceType": "ml.m5.large", "InstanceCount": 4}) == 4
