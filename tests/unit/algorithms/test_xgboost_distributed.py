"""The pure parts of built-in XGBoost on several hosts: the cluster a host reads, who is left out,
and which channels are sharded."""

from __future__ import annotations

import json

from smlocal.runtime.algorithms import xgboost_distributed as xd
from smlocal.runtime.staging import channel_shard


def test_the_cluster_comes_from_resourceconfig_sorted_as_the_tracker_ranks_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SM_HOSTS", raising=False)
    assert xd.read_cluster(tmp_path) == xd.Cluster(("algo-1",), "algo-1")  # no config: one host
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]}))
    cluster = xd.read_cluster(tmp_path)
    assert cluster == xd.Cluster(("algo-1", "algo-2"), "algo-2") and cluster.distributed


def test_a_host_without_training_or_validation_data_is_left_out_with_the_containers_warning():
    cluster = xd.Cluster(("algo-1", "algo-2"), "algo-2")
    assert xd.exclusion_warning(cluster, has_train=True, has_validation=False, validation_channel=None) is None
    no_train = xd.exclusion_warning(cluster, has_train=False, has_validation=True, validation_channel="validation")
    assert no_train.startswith("Host algo-2 does not have training data. Will broadcast to cluster and this host "
                               "algo-2 will not be used in distributed training.")
    no_val = xd.exclusion_warning(cluster, has_train=True, has_validation=False, validation_channel="validation")
    assert no_val.startswith("Host algo-2 does not have validation data in the validation channel : validation.")


def test_only_sharded_channels_of_several_hosts_are_dealt_out():
    sharded = {"S3DataDistributionType": "ShardedByS3Key"}
    assert channel_shard(sharded, 1, 3) == (1, 3)
    assert channel_shard(sharded, 0, 1) is None  # one host gets everything
    assert channel_shard({"S3DataDistributionType": "FullyReplicated"}, 1, 3) is None
    assert channel_shard({}, 1, 3) is None  # FullyReplicated is the default
