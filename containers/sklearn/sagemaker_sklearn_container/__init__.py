"""smlocal's stand-in for the scikit-learn image's ``sagemaker_sklearn_container`` package.

The image sets ``SAGEMAKER_TRAINING_MODULE=sagemaker_sklearn_container.training:main`` (read by the
real ``sagemaker-training`` ``train`` command) and ``SAGEMAKER_SERVING_MODULE=
sagemaker_sklearn_container.serving:main`` (read by ``serve``), as AWS's image does.
"""
