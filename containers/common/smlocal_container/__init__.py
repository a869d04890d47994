"""Code shared by smlocal's framework images (runs INSIDE the image, never on the host).

``serve``: the ``serve`` contract (HTTP on port 8080: ``GET /ping``, ``POST /invocations``) on
smlocal's serving worker handlers; ``cli``: the ``serve`` command, which runs the module named by
``SAGEMAKER_SERVING_MODULE`` as the real images' ``serve`` does.
"""
