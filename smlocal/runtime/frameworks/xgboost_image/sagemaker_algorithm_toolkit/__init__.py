"""smlocal's ``sagemaker_algorithm_toolkit`` (of the XGBoost image): its exception types."""
