"""What a failed user script leaves as its job's FailureReason, as pure functions (no I/O).

When the entry point of a script-mode job fails, SageMaker's training toolkit (``sagemaker-training``)
extracts an ErrorMessage from the script's output (:func:`error_message`), writes
``ExecuteUserScriptError`` text to ``/opt/ml/output/failure`` (:func:`toolkit_failure_message`) and
exits 1; SageMaker wraps that text as DescribeTrainingJob's FailureReason
(:func:`script_failure_reason`). The command line the toolkit ran is
:func:`smlocal.runtime.contract.script_command`'s.
"""

from __future__ import annotations

import re
from typing import Sequence

FAILURE_REASON_MAX = 1024
CONTAINER_FAILURE_EXIT_CODE = 1  # the toolkit's trainer exits 1 after an ExecuteUserScriptError
# The first output line containing one of these starts the ErrorMessage: builtin exception names,
# TensorFlow/pip/MPI markers, and the default error class (no smdebug or TensorFlow installed).
_ERROR_MARKERS = (
    "BaseException Exception ArithmeticError AssertionError AttributeError BlockingIOError "
    "BrokenPipeError BufferError ChildProcessError ConnectionAbortedError ConnectionError "
    "ConnectionRefusedError ConnectionResetError EOFError EnvironmentError FileExistsError "
    "FileNotFoundError FloatingPointError IOError ImportError IndentationError IndexError "
    "InterruptedError IsADirectoryError KeyError LookupError MemoryError ModuleNotFoundError "
    "NameError NotADirectoryError NotImplementedError OSError OverflowError PermissionError "
    "ProcessLookupError RecursionError ReferenceError RuntimeError SyntaxError SystemError "
    "TabError TimeoutError TypeError UnboundLocalError UnicodeDecodeError UnicodeEncodeError "
    "UnicodeError UnicodeTranslateError ValueError ZeroDivisionError ResourceExhaustedError "
    "OutOfRangeError InvalidArgumentError mpirun.real ORTE ExecuteUserScriptError"
).split() + ["Invalid requirement"]
_COMPILER_PATHS = ("tensorflow/compiler/xla", "tensorflow/compiler/tf2xla",
                   "tensorflow/python/compiler/xla", "torch_xla/")
_MPI_TAG = re.compile(r"\[(\d),(\d)\]<std(?:err|out)>")


def _watch(text: str) -> str:
    """The toolkit's filter of one output stream: every line from the first error marker on."""
    output: list[str] = []
    started = False
    for line in text.strip().split("\n"):
        line = _MPI_TAG.sub("", line)
        if started or any(marker in line for marker in _ERROR_MARKERS):
            started = True
            if line not in output:  # as the toolkit: compares the raw line, so rarely drops one
                output.append(line.strip(" :\n") + "\n")
    return " ".join(output)


def error_message(stderr: str, stdout: str = "") -> str:
    """The ErrorMessage the toolkit extracts from a failed script's output (both streams)."""
    joined = " ".join([_watch(stdout), _watch(stderr)])
    return "\n".join(dict.fromkeys(joined.split("\n"))).strip()


def toolkit_failure_message(
    exit_code: int, command: Sequence[str], *, stderr: str = "", stdout: str = "",
    capture_error: bool = False, hardened: bool = False,
) -> str:
    """The text the toolkit writes to /opt/ml/output/failure when the user script fails.

    Args:
        exit_code: The script's return code as Popen gives it (negative after a signal).
        command: The argv script_command returned (called with the same flags).
        stderr: The script's standard error.
        stdout: The script's standard output (scanned too when capturing).
        capture_error: As for script_command; without it ErrorMessage is empty.
        hardened: As for script_command.

    Returns:
        ``ExecuteUserScriptError:\\nExitCode N\\nErrorMessage "..."\\nCommand "..."``, with an
        ``ExtraInfo "..."`` line before Command for exit code 137 or an XLA compiler error.
    """
    message = error_message(stderr, stdout) if capture_error else ""
    shown = command[2] if capture_error and not hardened else " ".join(command)
    extra = "OutOfMemory: Process killed by SIGKILL (signal 9)" if exit_code == 137 else None
    if message and any(path in message for path in _COMPILER_PATHS):
        extra = "SMTrainingCompiler Error: Error occurred in SMTrainingCompiler."
    info = "" if extra is None else 'ExtraInfo "%s"\n' % extra
    return ('ExecuteUserScriptError:\nExitCode %s\nErrorMessage "%s"\n%sCommand "%s"'
            % (exit_code, message, info, shown)).strip()


def script_failure_reason(
    exit_code: int, stderr_tail: str, command: Sequence[str], *, stdout_tail: str = "",
    capture_error: bool = False, hardened: bool = False,
) -> str:
    """DescribeTrainingJob's FailureReason after the user script failed.

    SageMaker wraps the failure file as ``AlgorithmError: <text>, exit code: <container exit
    code>`` (the toolkit exits 1); the text is shortened so the whole fits the API's 1024.

    Example: ``AlgorithmError: ExecuteUserScriptError:\\nExitCode 1\\nErrorMessage ""\\n``
    ``Command "/miniconda3/bin/python train.py --epochs 3", exit code: 1``.
    """
    body = toolkit_failure_message(exit_code, command, stderr=stderr_tail, stdout=stdout_tail,
                                   capture_error=capture_error, hardened=hardened)
    prefix, suffix = "AlgorithmError: ", ", exit code: %d" % CONTAINER_FAILURE_EXIT_CODE
    return prefix + body[:FAILURE_REASON_MAX - len(prefix) - len(suffix)] + suffix
