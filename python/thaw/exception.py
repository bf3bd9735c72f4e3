"""Exceptions and warnings of the thaw SDK (named as in modal.exception)."""

import builtins


class Error(Exception):
    """Base class of thaw's errors."""


class InvalidError(Error):
    """A definition or an argument is not valid (raised where Modal raises it)."""


class NotFoundError(Error):
    """An app, function, class, volume or secret does not exist."""


class ExecutionError(Error):
    """The runtime or a container failed while running a call."""


class RemoteError(Error):
    """A remote call raised an exception that could not be sent back as itself;
    the message holds its text and remote traceback."""


class TimeoutError(Error, builtins.TimeoutError):
    """Waiting for a result took longer than the timeout given."""


class FunctionTimeoutError(TimeoutError):
    """A call ran longer than its function's timeout= and was interrupted."""


class OutputExpiredError(TimeoutError):
    """The result of a spawned call is no longer available."""


class ConnectionError(Error, builtins.ConnectionError):
    """The thaw runtime could not be reached or started."""


class MissingPackageError(Error, ImportError):
    """A package the Image names (or the app imports) is not installed on the
    host. thaw runs functions with the host's /usr/bin/python3, so the fix is
    to install the Debian package the message names."""


class UnsupportedWarning(UserWarning):
    """A parameter or feature was accepted but thaw cannot honour it; the
    message names it and says why."""


class DeprecatedWarning(UserWarning):
    """An old Modal name was used; thaw maps it to the current one."""


class InputCancellation(BaseException):
    """Raised inside a function's code when its input overruns its timeout,
    or a @concurrent input or streaming generator is cancelled
    (FunctionCall.cancel(), a caller gone), as in Modal. A BaseException, so that `except Exception` in user code (retry
    loops and the like) does not swallow it; catch it to clean up."""


# Modal also exports this name.
DeprecationError = InvalidError


# Other names of modal.exception, which code written for Modal may catch
# (`except modal.exception.AlreadyExistsError:`): thaw raises none of them
# itself, but an except clause naming one must not fail on the name.
class AlreadyExistsError(Error):
    """An object of that name exists already."""


class AuthError(Error):
    """Credentials were refused (thaw has none)."""


class ConflictError(InvalidError):
    """A conflicting operation."""


class SerializationError(Error):
    """A value could not be serialized."""


class DeserializationError(Error):
    """A value could not be deserialized."""


class InternalFailure(Error):
    """A failure of the platform rather than of the user's code."""


class InternalError(Error):
    """An internal error."""


class VersionError(Error):
    """An incompatible client version."""


class ClientClosed(Error):
    """The client was closed."""
