"""AWS-shaped service errors.

Every error a client can see is one of these: it carries the AWS error code, the HTTP status and
the message, and the gateway serializes it in the protocol the client spoke. Service code raises
them; it never builds HTTP responses itself.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error a client receives as an AWS error response."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class ValidationError(ServiceError):
    """``ValidationException``: the request is malformed or names something that does not exist."""

    code = "ValidationException"
    status = 400


class SerializationError(ServiceError):
    """``SerializationException``: the body cannot be read or does not deserialize into the input shape."""

    code = "SerializationException"
    status = 400


class ResourceNotFound(ServiceError):
    """``ResourceNotFound``: used by the operations whose model declares it (e.g. DescribePipeline)."""

    code = "ResourceNotFound"
    status = 400


class ResourceInUse(ServiceError):
    """``ResourceInUse``: a resource with that name already exists or is busy."""

    code = "ResourceInUse"
    status = 400


class ResourceLimitExceeded(ServiceError):
    """``ResourceLimitExceeded``: a quota was hit."""

    code = "ResourceLimitExceeded"
    status = 400


class ConflictError(ServiceError):
    """``ConflictException``: the resource's state does not allow the change."""

    code = "ConflictException"
    status = 400


class NotImplementedBySmlocal(ServiceError):
    """A real SageMaker operation that smlocal does not implement (yet)."""

    code = "NotImplementedBySmlocal"
    status = 501

    def __init__(self, operation: str):
        super().__init__(
            f"The SageMaker operation {operation} is not implemented by smlocal. "
            "See the README's list of supported operations."
        )


class UnknownOperation(ServiceError):
    """The target names no SageMaker operation at all (AWS answers UnknownOperationException)."""

    code = "UnknownOperationException"
    status = 400


def not_found(message: str = "Requested resource not found.") -> ValidationError:
    """The ValidationException AWS returns for Describe*/Stop* of an unknown job."""
    return ValidationError(message)
