"""The toolkit's exception types (their names appear in FailureReasons and logs)."""

from __future__ import annotations


class ClientError(Exception):
    """An error the user can fix (bad input, failing user script)."""


class _CalledProcessError(ClientError):
    """A command that failed: ``<Type>:\\nCommand "<cmd>"`` and its captured output, if any."""

    def __init__(self, cmd, return_code=None, output=None):
        self.return_code = return_code
        self.cmd = cmd
        self.output = output
        super().__init__()

    def __str__(self):
        shown = ""
        if isinstance(self.output, bytes) and self.output:
            shown = "\n" + self.output.decode("latin1")
        elif self.output:
            shown = "\n" + str(self.output)
        return (f'{type(self).__name__}:\nCommand "{self.cmd}"' + shown).strip()


class InstallModuleError(_CalledProcessError):
    """``pip install`` of the user module failed."""


class ImportModuleError(ClientError):
    """The user module could not be imported."""


class ExecuteUserScriptError(_CalledProcessError):
    """The user script exited with a non-zero code."""


class ChannelDoesNotExistException(Exception):
    """A channel name that the job was not given."""

    def __init__(self, channel_name):
        super().__init__(f"Channel {channel_name} is not a valid channel")
        self.channel_name = channel_name


class UnsupportedFormatError(Exception):
    """A content type that the default input_fn/output_fn cannot handle."""

    def __init__(self, content_type, **kwargs):
        self.message = (
            "Content type %s is not supported by this framework.\n\n"
            "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
            "            serialize the response. For more information, see the SageMaker Python SDK README."
            % content_type
        )
        super().__init__(self.message, **kwargs)
