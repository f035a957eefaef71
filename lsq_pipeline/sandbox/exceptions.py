"""One class per LeadSquared `MX...` exception type: its exact ExceptionType, message and HTTP status."""

from __future__ import annotations


class SandboxError(Exception):
    """An error LeadSquared answers with `{"Status":"Error","ExceptionType":...,"ExceptionMessage":...}`."""

    exception_type = "MXException"
    http_status = 500
    default_message = "The API call failed."

    def __init__(self, message: str | None = None):
        message = message or self.default_message
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"Status": "Error", "ExceptionType": self.exception_type, "ExceptionMessage": self.message}

    def row_fields(self) -> dict:
        """The keys a failed bulk row carries (see README: per-row failure shape)."""
        return {"ExceptionType": self.exception_type, "ExceptionMessage": self.message}


class MXInvalidInputException(SandboxError):
    exception_type = "MXInvalidInputException"


class MXMandatoryAttributeMissingException(SandboxError):
    exception_type = "MXMandatoryAttributeMissingException"


class MXInvalidActivityFieldsException(SandboxError):
    exception_type = "MXInvalidActivityFieldsException"


class MXInvalidFieldValueException(SandboxError):
    exception_type = "MXInvalidFieldValueException"


class MXDuplicateEntryException(SandboxError):
    exception_type = "MXDuplicateEntryException"

    def __init__(self, message: str, existing_id: str | None = None):
        super().__init__(message)
        self.existing_id = existing_id


class MXRecordNotFoundException(SandboxError):
    exception_type = "MXRecordNotFoundException"


class MXSystemFieldUpdateException(SandboxError):
    exception_type = "MXSystemFieldUpdateException"


class MXUnAuthorizedAccessException(SandboxError):
    exception_type = "MXUnAuthorizedAccessException"
    http_status = 401
    default_message = "Invalid or missing access key / secret key."


class MXInvalidJsonException(SandboxError):
    """A body that is not UTF-8 JSON of the right shape."""

    exception_type = "MXInvalidJsonException"
    http_status = 400


class MXRequestTooLargeException(SandboxError):
    """A body over the sandbox's size cap (LeadSquared's own cap and wording are not documented)."""

    exception_type = "MXRequestTooLargeException"
    http_status = 413

    def __init__(self, size: int, limit: int):
        super().__init__(f"The request body of {size} bytes exceeds the limit of {limit} bytes.")


class MXAPINotFoundException(SandboxError):
    exception_type = "MXAPINotFoundException"
    http_status = 404
    default_message = "The API could not be found. Please check the API signature."


class MXAPIRateLimitExceededException(SandboxError):
    exception_type = "MXAPIRateLimitExceededException"
    http_status = 429

    def __init__(self, calls: int, seconds: float):
        shown = int(seconds) if float(seconds).is_integer() else seconds
        super().__init__(f"API calls exceeded the limit of {calls} in {shown} second(s)")

    @classmethod
    def daily(cls, limit: int) -> "MXAPIRateLimitExceededException":
        """The refusal past the day's count. LeadSquared does not document it: a guess (README)."""
        error = cls.__new__(cls)
        SandboxError.__init__(error, f"API calls exceeded the daily limit of {limit} calls; try again after 00:00 UTC")
        return error


def status_comment_missing(field: str = "mx_Custom_19") -> MXInvalidActivityFieldsException:
    """The documented error when status comments are on and `Status` comes without a comment."""
    return MXInvalidActivityFieldsException(
        f"Field name : '{field}' of datatype : 'String' is mandatory."
    )
