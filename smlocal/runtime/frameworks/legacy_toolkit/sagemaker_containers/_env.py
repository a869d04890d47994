"""The job's environment as the toolkit reads it: paths, config files, hosts, hyperparameters.

Paths are under ``$SAGEMAKER_BASE_DIR`` (default ``/opt/ml``). Hyperparameter values are parsed
as JSON where they parse (the SDK JSON-encodes them), else kept as strings; the ``sagemaker_*``
keys are framework parameters, not user hyperparameters.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess

from sagemaker_containers import _mapping

logger = logging.getLogger(__name__)

BASE_PATH_ENV = "SAGEMAKER_BASE_DIR"
base_dir = os.environ.get(BASE_PATH_ENV, "/opt/ml")
code_dir = os.path.join(base_dir, "code")
model_dir = os.path.join(base_dir, "model")
input_dir = os.path.join(base_dir, "input")
input_config_dir = os.path.join(input_dir, "config")
output_dir = os.path.join(base_dir, "output")
output_data_dir = os.path.join(output_dir, "data")
output_intermediate_dir = os.path.join(output_dir, "intermediate")
_input_data_dir = os.path.join(input_dir, "data")

HYPERPARAMETERS_FILE = "hyperparameters.json"
RESOURCE_CONFIG_FILE = "resourceconfig.json"
INPUT_DATA_CONFIG_FILE = "inputdataconfig.json"
hyperparameters_file_dir = os.path.join(input_config_dir, HYPERPARAMETERS_FILE)
input_data_config_file_dir = os.path.join(input_config_dir, INPUT_DATA_CONFIG_FILE)
resource_config_file_dir = os.path.join(input_config_dir, RESOURCE_CONFIG_FILE)

USER_PROGRAM_PARAM = "sagemaker_program"
SUBMIT_DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
REGION_NAME_PARAM = "sagemaker_region"
S3_OUTPUT_LOCATION_PARAM = "sagemaker_s3_output"
# the toolkit's own keys: neither user hyperparameters nor additional framework parameters
SAGEMAKER_HYPERPARAMETERS = (
    USER_PROGRAM_PARAM, SUBMIT_DIR_PARAM, "sagemaker_enable_cloudwatch_metrics", LOG_LEVEL_PARAM,
    JOB_NAME_PARAM, "default_user_module_name", REGION_NAME_PARAM, "_tuning_objective_metric",
    S3_OUTPUT_LOCATION_PARAM,
)
SAGEMAKER_PREFIX = "sagemaker_"


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def read_hyperparameters():
    """``hyperparameters.json`` with every value parsed as JSON where it parses."""
    parsed = {}
    for key, value in _read_json(hyperparameters_file_dir).items():
        try:
            parsed[key] = json.loads(value)
        except (ValueError, TypeError):
            logger.info("Failed to parse hyperparameter %s value %s to Json.\nReturning the value itself", key, value)
            parsed[key] = value
    return parsed


def read_resource_config():
    """``resourceconfig.json``: ``current_host``, ``hosts`` and the rest."""
    return _read_json(resource_config_file_dir)


def read_input_data_config():
    """``inputdataconfig.json``: one entry per channel ({} when the job has no channel)."""
    try:
        return _read_json(input_data_config_file_dir)
    except FileNotFoundError:
        return {}


def channel_path(channel):
    """The folder of a channel's data: ``<base>/input/data/<channel>``."""
    return os.path.join(_input_data_dir, channel)


def num_gpus():
    """GPUs ``nvidia-smi`` lists (0 without one)."""
    try:
        output = subprocess.check_output(["nvidia-smi", "--list-gpus"]).decode("utf-8")
    except (OSError, subprocess.CalledProcessError):
        logger.info("No GPUs detected (normal if no gpus installed)")
        return 0
    return sum(1 for line in output.split("\n") if line.startswith("GPU "))


def num_cpus():
    """The CPUs of this container."""
    return multiprocessing.cpu_count()


def write_env_vars(env_vars=None):
    """Puts ``env_vars`` into this process's environment."""
    os.environ.update(env_vars or {})


class _Env(_mapping.MappingMixin):
    """What training and serving share."""

    def __init__(self):
        self._current_host = os.environ.get("CURRENT_HOST")
        self._module_name = os.environ.get(USER_PROGRAM_PARAM.upper())
        self._user_entry_point = self._module_name
        self._module_dir = os.environ.get(SUBMIT_DIR_PARAM.upper())
        self._log_level = int(os.environ.get(LOG_LEVEL_PARAM.upper(), logging.INFO))

    @property
    def model_dir(self):
        """Where the model is saved (training) or loaded from (serving)."""
        return model_dir

    @property
    def current_host(self):
        """The name of this container (``algo-1`` ...)."""
        return self._current_host

    @property
    def num_gpus(self):
        return num_gpus()

    @property
    def num_cpus(self):
        return num_cpus()

    @property
    def module_name(self):
        """The user module: ``sagemaker_program`` without ``.py``."""
        name = self._module_name
        return name[:-3] if name and name.endswith(".py") else name

    @property
    def module_dir(self):
        """Where the user code comes from (``sagemaker_submit_directory``)."""
        return self._module_dir

    @property
    def log_level(self):
        return self._log_level

    @property
    def user_entry_point(self):
        """The entry point as given (``sagemaker_program``)."""
        return self._user_entry_point


class TrainingEnv(_Env):
    """The environment of a training job, as ``sagemaker_containers.training_env()`` returns it."""

    def __init__(self, resource_config=None, input_data_config=None, hyperparameters=None):
        super().__init__()
        resource_config = resource_config if resource_config is not None else read_resource_config()
        input_data_config = input_data_config if input_data_config is not None else read_input_data_config()
        all_hyperparameters = hyperparameters if hyperparameters is not None else read_hyperparameters()
        toolkit, rest = _mapping.split_by_criteria(all_hyperparameters, keys=SAGEMAKER_HYPERPARAMETERS,
                                                   prefix=SAGEMAKER_PREFIX)
        self._hyperparameters = dict(rest)
        self._additional_framework_parameters = {k: v for k, v in toolkit.items()
                                                 if k not in SAGEMAKER_HYPERPARAMETERS}
        self._resource_config = resource_config
        self._input_data_config = input_data_config
        self._hosts = sorted(resource_config["hosts"])
        self._current_host = resource_config["current_host"]
        self._network_interface_name = resource_config.get("network_interface_name", "eth0")
        self._channel_input_dirs = {name: channel_path(name) for name in input_data_config}
        if self._module_name is None:
            self._module_name = toolkit.get(USER_PROGRAM_PARAM)
        self._user_entry_point = self._user_entry_point or toolkit.get(USER_PROGRAM_PARAM)
        self._module_dir = toolkit.get(SUBMIT_DIR_PARAM, self._module_dir)
        self._log_level = toolkit.get(LOG_LEVEL_PARAM, self._log_level)
        self._job_name = toolkit.get(JOB_NAME_PARAM, os.environ.get("TRAINING_JOB_NAME"))
        self._sagemaker_s3_output = toolkit.get(S3_OUTPUT_LOCATION_PARAM)
        self._framework_module = os.environ.get("SAGEMAKER_TRAINING_MODULE")

    @property
    def is_master(self):
        """Whether this host is the first of the sorted hosts."""
        return self._current_host == self.master_hostname

    @property
    def master_hostname(self):
        return self._hosts[0]

    @property
    def job_name(self):
        return self._job_name

    @property
    def additional_framework_parameters(self):
        """The ``sagemaker_*`` hyperparameters that are not the toolkit's own."""
        return self._additional_framework_parameters

    def sagemaker_s3_output(self):
        """The S3 location for intermediate output (``sagemaker_s3_output``), if given."""
        return self._sagemaker_s3_output

    def to_cmd_args(self):
        """The user hyperparameters as the script's command line."""
        return _mapping.to_cmd_args(self.hyperparameters)

    def to_env_vars(self):
        """The environment as ``SM_*`` variables (what the script's process is given)."""
        env = {
            "hosts": self.hosts, "network_interface_name": self.network_interface_name,
            "hps": self.hyperparameters, "user_entry_point": self.user_entry_point,
            "framework_params": self.additional_framework_parameters, "resource_config": self.resource_config,
            "input_data_config": self.input_data_config, "output_data_dir": self.output_data_dir,
            "channels": sorted(self.channel_input_dirs), "current_host": self.current_host,
            "module_name": self.module_name, "log_level": self.log_level,
            "framework_module": self.framework_module, "input_dir": self.input_dir,
            "input_config_dir": self.input_config_dir, "output_dir": self.output_dir,
            "num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "model_dir": self.model_dir,
            "module_dir": self.module_dir, "training_env": dict(self), "user_args": self.to_cmd_args(),
            "output_intermediate_dir": self.output_intermediate_dir,
        }
        env.update({"channel_%s" % name: path for name, path in self.channel_input_dirs.items()})
        env.update({"hp_%s" % key: value for key, value in self.hyperparameters.items()})
        return _mapping.to_env_vars(env)

    @property
    def hosts(self):
        """Every host of the job, sorted."""
        return self._hosts

    @property
    def channel_input_dirs(self):
        """Channel name -> the folder of its data."""
        return self._channel_input_dirs

    @property
    def network_interface_name(self):
        return self._network_interface_name

    @property
    def input_dir(self):
        return input_dir

    @property
    def input_config_dir(self):
        return input_config_dir

    @property
    def output_dir(self):
        return output_dir

    @property
    def hyperparameters(self):
        """The user hyperparameters (parsed from JSON), without the ``sagemaker_*`` ones."""
        return self._hyperparameters

    @property
    def resource_config(self):
        return self._resource_config

    @property
    def input_data_config(self):
        return self._input_data_config

    @property
    def output_data_dir(self):
        return output_data_dir

    @property
    def output_intermediate_dir(self):
        return output_intermediate_dir

    @property
    def framework_module(self):
        """``SAGEMAKER_TRAINING_MODULE`` of the image, if set."""
        return self._framework_module


class ServingEnv(_Env):
    """The environment of a model server, as the serving containers read it."""

    def __init__(self):
        super().__init__()
        self._use_nginx = os.environ.get("SAGEMAKER_USE_NGINX", "true").lower() in ("1", "true", "yes", "on", "y", "t")
        self._model_server_timeout = int(os.environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60))
        self._model_server_workers = int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", num_cpus()))
        self._default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
        self._http_port = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
        self._safe_port_range = os.environ.get("SAGEMAKER_SAFE_PORT_RANGE")
        self._framework_module = os.environ.get("SAGEMAKER_SERVING_MODULE")

    @property
    def use_nginx(self):
        return self._use_nginx

    @property
    def model_server_timeout(self):
        return self._model_server_timeout

    @property
    def model_server_workers(self):
        return self._model_server_workers

    @property
    def framework_module(self):
        return self._framework_module

    @property
    def default_accept(self):
        """``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (default ``application/json``)."""
        return self._default_accept

    @property
    def http_port(self):
        return self._http_port

    @property
    def safe_port_range(self):
        return self._safe_port_range
