"""smlocal's ``sagemaker_xgboost_container``: what the XGBoost image offers script-mode code.

``data_utils`` (training data to DMatrix), ``encoder`` (request bodies to DMatrix), ``distributed``
(multi-host helpers) and ``constants``, with the real image's module paths, function names,
signatures, return values and error types. Written from that public interface, not copied.
"""
