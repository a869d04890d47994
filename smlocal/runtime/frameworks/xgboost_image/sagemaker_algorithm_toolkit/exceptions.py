"""The algorithm toolkit's errors: AlgorithmError (a bug), UserError (fixable input), PlatformError.

The message is the one given, else the cause's; with a cause its class name is appended as
``" (caused by ValueError)"``.
"""

from __future__ import annotations


class BaseToolkitError(Exception):
    """The base of the toolkit's errors.

    Attributes:
        message: The formatted message.
        caused_by: The underlying exception, if any.
    """

    def __init__(self, message=None, caused_by=None):
        text = self._format_exception_message(message, caused_by)
        super().__init__(text)
        self.message = text
        self.caused_by = caused_by

    @staticmethod
    def _format_exception_message(message, caused_by):
        if message:
            text = message
        elif caused_by:
            text = getattr(caused_by, "message", str(caused_by))
        else:
            text = "unknown error occurred"
        if caused_by:
            text += f" (caused by {caused_by.__class__.__name__})"
        return text


class AlgorithmError(BaseToolkitError):
    """A failure of the algorithm itself."""


class UserError(BaseToolkitError):
    """A failure caused by the user's configuration or data."""


class PlatformError(BaseToolkitError):
    """A failure of the platform underneath (network, missing folders)."""
