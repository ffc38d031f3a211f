"""The stream manager exceptions, with v1's names and hierarchy: one class
per response status (spec 2.6), UpdateNotAllowedException being an
InvalidRequestException, and ClientException for what fails on the
client's side. Every one carries message, status (a ResponseStatusCode,
or None) and request_id."""

__all__ = [
    'StreamManagerException',
    'ClientException',
    'ValidationException',
    'ConnectFailedException',
    'InvalidRequestException',
    'RequestPayloadTooLargeException',
    'ResourceNotFoundException',
    'ResponsePayloadTooLargeException',
    'ServerTimeoutException',
    'UnauthorizedException',
    'UnknownFailureException',
    'NotEnoughMessagesException',
    'MessageStoreReadErrorException',
    'ServerOutOfMemoryException',
    'UpdateFailedException',
    'UnknownOperationException',
    'UpdateNotAllowedException',
]


class StreamManagerException(Exception):
    def __init__(self, message="", status=None, request_id=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id


class ClientException(StreamManagerException):
    """A failure on the client's side, before or without a response."""


class ValidationException(ClientException):
    """A request the client refuses to send."""


class ConnectFailedException(ClientException):
    """The handshake failed: wrong connect version, or a ConnectResponse
    other than Success (an unknown token among them: status then says
    Unauthorized)."""


class InvalidRequestException(StreamManagerException):
    pass


class RequestPayloadTooLargeException(StreamManagerException):
    pass


class ResourceNotFoundException(StreamManagerException):
    pass


class ResponsePayloadTooLargeException(StreamManagerException):
    pass


class ServerTimeoutException(StreamManagerException):
    pass


class UnauthorizedException(StreamManagerException):
    pass


class UnknownFailureException(StreamManagerException):
    pass


class NotEnoughMessagesException(StreamManagerException):
    pass


class MessageStoreReadErrorException(StreamManagerException):
    pass


class ServerOutOfMemoryException(StreamManagerException):
    pass


class UpdateFailedException(StreamManagerException):
    pass


class UnknownOperationException(StreamManagerException):
    pass


class UpdateNotAllowedException(InvalidRequestException):
    pass
