"""smlocal: the real SageMaker API on localhost, with jobs that really run."""

__version__ = "0.1.0"
