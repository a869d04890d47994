"""The toolkit's ``beta`` namespace (``sagemaker_containers.beta.framework``)."""
