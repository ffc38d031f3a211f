"""StreamManagerClient: v1's stream manager client (spec 2), standard
library only.

One TCP connection to 127.0.0.1:$STREAM_MANAGER_SERVER_PORT, opened by the
constructor with the connect-version byte and a Connect frame carrying
$AWS_CONTAINER_AUTHORIZATION_TOKEN. Frames are a 4-byte big-endian length
(the operation byte included), the operation and a CBOR map. A reader
thread hands each response to the call waiting for its requestId, so any
number of threads may call one client at once and a long-poll read holds
up nothing else. When the connection drops, the calls in flight fail with
ConnectionError and the next call connects again.

Errors are v1's: a non-Success status raises its StreamManagerException
subclass (ResourceNotFoundException, NotEnoughMessagesException, ...); a
request the client refuses raises ValidationException before anything is
sent; a failed handshake raises ConnectFailedException (status says why,
e.g. Unauthorized); a call not answered in time raises
asyncio.TimeoutError; an unreachable server raises ConnectionError.
"""
import logging
import os
import socket
import struct
import threading
import time
import uuid

from . import cbor
from .data import (
    AppendMessageRequest,
    AppendMessageResponse,
    ConnectRequest,
    ConnectResponse,
    CreateMessageStreamRequest,
    CreateMessageStreamResponse,
    DeleteMessageStreamRequest,
    DeleteMessageStreamResponse,
    DescribeMessageStreamRequest,
    DescribeMessageStreamResponse,
    ListStreamsRequest,
    ListStreamsResponse,
    MessageStreamDefinition,
    Operation,
    ReadMessagesOptions,
    ReadMessagesRequest,
    ReadMessagesResponse,
    ResponseStatusCode,
    UpdateMessageStreamRequest,
    UpdateMessageStreamResponse,
    VersionInfo,
)
from .exceptions import (
    ClientException,
    ConnectFailedException,
    InvalidRequestException,
    MessageStoreReadErrorException,
    NotEnoughMessagesException,
    RequestPayloadTooLargeException,
    ResourceNotFoundException,
    ResponsePayloadTooLargeException,
    ServerOutOfMemoryException,
    ServerTimeoutException,
    StreamManagerException,
    UnauthorizedException,
    UnknownFailureException,
    UnknownOperationException,
    UpdateFailedException,
    UpdateNotAllowedException,
    ValidationException,
)
from .model import invalid

# The v1 SDK release whose protocol this client speaks; the protocol
# version itself is VersionInfo.PROTOCOL_VERSION.
SDK_VERSION = "1.1.1"

DEFAULT_PORT = 8088
CONNECT_VERSION = 1
OLD_SUPPORTED_PROTOCOL_VERSIONS = ["1.0.0"]
# The largest frame length (the operation byte included) either side sends.
MAX_FRAME = 1 << 30

_RESPONSES = {
    Operation.CreateMessageStream: (Operation.CreateMessageStreamResponse, CreateMessageStreamResponse),
    Operation.UpdateMessageStream: (Operation.UpdateMessageStreamResponse, UpdateMessageStreamResponse),
    Operation.DeleteMessageStream: (Operation.DeleteMessageStreamResponse, DeleteMessageStreamResponse),
    Operation.AppendMessage: (Operation.AppendMessageResponse, AppendMessageResponse),
    Operation.ReadMessages: (Operation.ReadMessagesResponse, ReadMessagesResponse),
    Operation.ListStreams: (Operation.ListStreamsResponse, ListStreamsResponse),
    Operation.DescribeMessageStream: (Operation.DescribeMessageStreamResponse, DescribeMessageStreamResponse),
}

_EXCEPTIONS = {
    ResponseStatusCode.UnknownFailure: UnknownFailureException,
    ResponseStatusCode.Unauthorized: UnauthorizedException,
    ResponseStatusCode.InvalidRequest: InvalidRequestException,
    ResponseStatusCode.RequestPayloadTooLarge: RequestPayloadTooLargeException,
    ResponseStatusCode.ResourceNotFound: ResourceNotFoundException,
    ResponseStatusCode.ServerTimeout: ServerTimeoutException,
    ResponseStatusCode.ResponsePayloadTooLarge: ResponsePayloadTooLargeException,
    ResponseStatusCode.NotEnoughMessages: NotEnoughMessagesException,
    ResponseStatusCode.MessageStoreReadError: MessageStoreReadErrorException,
    ResponseStatusCode.OutOfMemoryError: ServerOutOfMemoryException,
    ResponseStatusCode.UpdateFailed: UpdateFailedException,
    ResponseStatusCode.UpdateNotAllowed: UpdateNotAllowedException,
    ResponseStatusCode.UnknownOperation: UnknownOperationException,
}

_CLOSED_MESSAGE = "Client is closed. Create a new client first."


def _timeout(message):
    # v1 raised asyncio's TimeoutError (the builtin one from Python 3.11).
    # Imported here: asyncio is most of this package's import time, and a
    # function that catches asyncio.TimeoutError has imported it already.
    import asyncio
    return asyncio.TimeoutError(message)


class _Eof(Exception):
    """The peer closed the connection."""


def _recv_exact(sock, n, deadline=None):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout('timed out')
            sock.settimeout(left)
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise _Eof('the stream manager closed the connection')
        got += k
    return bytes(buf)


def _read_frame(sock, deadline=None):
    """(operation code, payload) of the next frame."""
    length = struct.unpack('>i', _recv_exact(sock, 4, deadline))[0]
    if length < 1 or length > MAX_FRAME:
        raise ConnectionError('the stream manager sent a frame of length {} (1..{} allowed)'.format(length, MAX_FRAME))
    op = _recv_exact(sock, 1, deadline)[0]
    return op, _recv_exact(sock, length - 1, deadline)


def _frame(op, payload):
    return struct.pack('>iB', len(payload) + 1, op.value), payload


def _operation(code):
    try:
        return Operation(code)
    except ValueError:
        return Operation.Unknown


class _Call(object):
    """One request waiting for its response."""
    __slots__ = ('done', 'op', 'body', 'error')

    def __init__(self):
        self.done = threading.Event()
        self.op = None
        self.body = None
        self.error = None

    def answer(self, op, body):
        self.op, self.body = op, body
        self.done.set()

    def fail(self, error):
        self.error = error
        self.done.set()


class _Connection(object):
    """A connection past its handshake and the calls waiting on it. Lock
    order: write_lock may be held while lock is taken, never the reverse."""

    def __init__(self, sock, logger):
        self.sock = sock
        self.logger = logger
        self.write_lock = threading.Lock()
        self.lock = threading.Lock()
        self.calls = {}
        # (exception class, message) once the connection ended.
        self.ended = None
        self.reader = threading.Thread(target=self._read_loop, name='StreamManagerClient-reader', daemon=True)
        self.reader.start()

    def alive(self):
        with self.lock:
            return self.ended is None

    def register(self, request_id):
        call = _Call()
        with self.lock:
            if self.ended is not None:
                raise self.ended[0](self.ended[1])
            self.calls[request_id] = call
        return call

    def unregister(self, request_id):
        with self.lock:
            self.calls.pop(request_id, None)

    def send(self, parts):
        with self.write_lock:
            try:
                for p in parts:
                    self.sock.sendall(p)
            except OSError as e:
                # A partial frame may be out: nothing after it can be
                # understood, so the connection ends here.
                self.end(ConnectionError, 'writing to the stream manager failed: {}'.format(e))
                raise ConnectionError('writing to the stream manager failed: {}'.format(e)) from e

    def end(self, error_class, message):
        """Ends the connection once; the calls waiting fail with
        error_class(message)."""
        with self.lock:
            if self.ended is not None:
                return
            self.ended = (error_class, message)
            calls, self.calls = self.calls, {}
        for call in calls.values():
            call.fail(error_class(message))
        # Shutting down wakes the reader, which closes the socket: closed
        # here, its descriptor could be reused under the reader's recv.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_loop(self):
        while True:
            try:
                code, payload = _read_frame(self.sock)
            except (OSError, _Eof) as e:
                with self.lock:
                    quiet = self.ended is not None
                if not quiet:
                    self.logger.error('Lost the connection to the stream manager: %s', e)
                self.end(ConnectionError, 'lost the connection to the stream manager: {}'.format(e))
                self.sock.close()
                return
            op = _operation(code)
            if op is Operation.Unknown:
                self.logger.error('Found unknown operation %d', code)
            try:
                body = cbor.loads(payload)
                request_id = body.get('requestId') if isinstance(body, dict) else None
            except (cbor.CBORError, TypeError) as e:
                self.logger.error('Dropped a %s frame whose payload is not CBOR: %s', op.name, e)
                continue
            with self.lock:
                call = self.calls.pop(request_id, None) if isinstance(request_id, str) else None
            if call is None:
                # Its caller gave up (timed out), or the server answered a
                # request it could not read without naming it.
                self.logger.debug('Dropped a %s frame for request %r: no call waits for it', op.name, request_id)
                continue
            call.answer(op, body)


class StreamManagerClient:
    """
    A client of the stream manager. All parameters are optional.

    :param host: the stream manager's host ($STREAM_MANAGER_SERVER_HOST,
        else 127.0.0.1).
    :param port: its port ($STREAM_MANAGER_SERVER_PORT, else 8088).
    :param connect_timeout: seconds to open the TCP connection (3).
    :param request_timeout: seconds each operation, and the handshake,
        may take (60); a read waits its read_timeout_millis on top.
    :param logger: the logger of the client's own messages.

    :raises: :exc:`~.exceptions.ConnectFailedException` if the handshake
        fails (an unknown token: status Unauthorized).
    :raises: :exc:`asyncio.TimeoutError` if connecting or the handshake
        takes too long.
    :raises: :exc:`ConnectionError` if the server cannot be reached.
    """

    def __init__(
        self,
        host=None,
        port=None,
        connect_timeout=3,
        request_timeout=60,
        logger=logging.getLogger("StreamManagerClient"),
    ):
        if host is None:
            host = os.getenv("STREAM_MANAGER_SERVER_HOST") or "127.0.0.1"
        if port is None:
            raw = os.getenv("STREAM_MANAGER_SERVER_PORT") or str(DEFAULT_PORT)
            try:
                port = int(raw)
            except ValueError:
                raise ValidationException("STREAM_MANAGER_SERVER_PORT {!r} is not a port number".format(raw))
        for name, value in (("connect_timeout", connect_timeout), ("request_timeout", request_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValidationException("{} must be a positive number of seconds, not {!r}".format(name, value))
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.logger = logger
        self.auth_token = os.getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")

        # __state_lock guards __closed and __conn. __dial_lock is held while
        # connecting: one handshake at a time, the other callers wait for
        # its outcome. Order: __dial_lock, then __state_lock.
        self.__state_lock = threading.Lock()
        self.__closed = False
        self.__conn = None
        self.__dial_lock = threading.Lock()
        self.__connection()

    def __enter__(self):
        return self

    def __exit__(self, type, value, traceback):
        self.close()

    @property
    def connected(self):
        conn = self.__conn
        return conn is not None and conn.alive()

    # --- connection -------------------------------------------------------

    def __check_closed(self):
        if self.__closed:
            raise StreamManagerException(_CLOSED_MESSAGE)

    def __connection(self):
        with self.__dial_lock:
            with self.__state_lock:
                self.__check_closed()
                conn = self.__conn
                if conn is not None and conn.alive():
                    return conn
            conn = self.__dial()
            with self.__state_lock:
                # close() may have run during the handshake.
                if not self.__closed:
                    self.__conn = conn
                    return conn
            conn.end(StreamManagerException, _CLOSED_MESSAGE)
            raise StreamManagerException(_CLOSED_MESSAGE)

    def __dial(self):
        self.logger.debug("Opening connection to %s:%d", self.host, self.port)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.timeout:
            raise _timeout("connecting to the stream manager at {}:{} took over {}s".format(
                self.host, self.port, self.connect_timeout)) from None
        except OSError as e:
            self.logger.error("Connection error while connecting to server: %s", e)
            raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            deadline = None if self.request_timeout is None else time.monotonic() + self.request_timeout
            self.__handshake(sock, deadline)
            sock.settimeout(None)
        except socket.timeout:
            sock.close()
            raise _timeout("the stream manager did not answer Connect within {}s".format(self.request_timeout)) from None
        except _Eof as e:
            sock.close()
            raise ConnectFailedException("Failed to establish connection with the server: {}".format(e)) from None
        except BaseException:
            sock.close()
            raise
        self.logger.debug("Socket connected successfully. Starting read loop.")
        return _Connection(sock, self.logger)

    def __handshake(self, sock, deadline):
        request = ConnectRequest(
            request_id=str(uuid.uuid4()),
            protocol_version=VersionInfo.PROTOCOL_VERSION.value,
            other_supported_protocol_versions=list(OLD_SUPPORTED_PROTOCOL_VERSIONS),
            sdk_version=SDK_VERSION,
            auth_token=self.auth_token,
        )
        if deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        header, payload = _frame(Operation.Connect, cbor.dumps(request.as_dict()))
        sock.sendall(bytes((CONNECT_VERSION,)) + header + payload)

        version = _recv_exact(sock, 1, deadline)[0]
        if version != CONNECT_VERSION:
            self.logger.error("Unexpected response from the server, Connect version: %s.", version)
            raise ConnectFailedException("Failed to establish connection with the server: it speaks connect "
                                         "version {}, this client {}".format(version, CONNECT_VERSION))
        code, payload = _read_frame(sock, deadline)
        if _operation(code) is not Operation.ConnectResponse:
            self.logger.error("Received data with unexpected operation %s.", code)
            raise ConnectFailedException("Failed to establish connection with the server: it answered Connect "
                                         "with operation {}".format(code))
        try:
            body = cbor.loads(payload)
            response = ConnectResponse.from_dict(body)
        except (cbor.CBORError, TypeError, ValueError, AttributeError) as e:
            raise ConnectFailedException("Failed to establish connection with the server: "
                                         "malformed ConnectResponse: {}".format(e)) from None
        self.logger.debug("Received ConnectResponse from server: %s", response)
        if response.status is not ResponseStatusCode.Success:
            self.logger.error("Received ConnectResponse with unexpected status %s.", response.status)
            raise ConnectFailedException(
                "Failed to establish connection with the server: {}: {}".format(
                    response.status.name, response.error_message or "no reason given"),
                response.status, request.request_id)
        if response.protocol_version != request.protocol_version:
            self.logger.warning(
                "SDK with version %s using Protocol version %s is not fully compatible with Server with version %s. "
                "Client has connected in a compatibility mode using protocol version %s. "
                "Some features will not work as expected",
                SDK_VERSION, request.protocol_version, response.server_version, response.protocol_version)

    # --- requests ---------------------------------------------------------

    def __send_and_receive(self, operation, request, extra_wait=0.0):
        self.__check_closed()
        if request.request_id is None:
            request.request_id = str(uuid.uuid4())
        problem = invalid(request)
        if problem:
            raise ValidationException(problem)
        payload = cbor.dumps(request.as_dict())
        if len(payload) + 1 > MAX_FRAME:
            raise RequestPayloadTooLargeException(
                "the request is {} bytes; at most {} are allowed".format(len(payload) + 1, MAX_FRAME),
                ResponseStatusCode.RequestPayloadTooLarge, request.request_id)
        wait = None if self.request_timeout is None else self.request_timeout + extra_wait

        conn = self.__connection()
        request_id = request.request_id
        call = conn.register(request_id)
        header, payload = _frame(operation, payload)
        conn.send((header + payload,) if len(payload) < 65536 else (header, payload))
        if not call.done.wait(wait):
            conn.unregister(request_id)
            raise _timeout("no answer to {} {} within {}s".format(operation.name, request_id, wait))
        if call.error is not None:
            raise call.error

        response_op, response_class = _RESPONSES[operation]
        body = call.body
        if call.op is Operation.UnknownOperationError:
            self.logger.error("Received response with unsupported operation from server: %s. "
                              "You should update your server version", operation.name)
            self.__raise_for_status(body, request_id, ResponseStatusCode.UnknownOperation)
            raise UnknownOperationException(body.get("errorMessage"), ResponseStatusCode.UnknownOperation, request_id)
        if call.op is not response_op:
            raise ClientException("Received response with unknown operation from server", None, request_id)
        self.__raise_for_status(body, request_id,
                                ResponseStatusCode.Success if operation is Operation.ReadMessages else None)
        try:
            return response_class.from_dict(body)
        except (TypeError, ValueError, AttributeError) as e:
            raise ClientException("malformed {}: {}".format(response_op.name, e), None, request_id) from None

    @staticmethod
    def __raise_for_status(body, request_id, absent):
        code = body.get("status")
        if code is None and absent is not None:
            status = absent
        else:
            try:
                status = ResponseStatusCode(code)
            except ValueError:
                raise StreamManagerException(
                    "Client is not able to understand this server response status code", "Unrecognized", request_id
                ) from None
        if status is ResponseStatusCode.Success:
            return
        message = body.get("errorMessage")
        raise _EXCEPTIONS.get(status, StreamManagerException)(message, status, request_id)

    def __validate_read_message_options(self, options):
        if options is None:
            return
        if not isinstance(options, ReadMessagesOptions):
            raise ValidationException("options argument to read_messages must be a ReadMessageOptions object")
        problem = invalid(options)
        if problem:
            raise ValidationException(problem)
        if (options.min_message_count is not None and options.max_message_count is not None
                and options.min_message_count > options.max_message_count):
            raise ValidationException("min_message_count must be less than or equal to max_message_count")
        if (options.read_timeout_millis is not None and self.request_timeout is not None
                and options.read_timeout_millis > self.request_timeout * 1000):
            raise ValidationException("read_timeout_millis must be less than or equal to the client's request_timeout")

    # --- the public API (v1's) --------------------------------------------

    def read_messages(self, stream_name, options=None):
        """
        Reads messages from a stream. Without options: one message from
        the oldest, answered at once.

        :param stream_name: the stream's name.
        :param options: a :class:`.data.ReadMessagesOptions`; defaults
            desired_start_sequence_number 0 (a start below the oldest
            message reads from the oldest), min_message_count 1,
            max_message_count 1, read_timeout_millis 0 (answer at once, or
            NotEnoughMessagesException).
        :return: a list of at least one :class:`.data.Message`.
        """
        self.__check_closed()
        self.__validate_read_message_options(options)
        request = ReadMessagesRequest(stream_name=stream_name, read_messages_options=options)
        extra = (options.read_timeout_millis or 0) / 1000.0 if options is not None else 0.0
        response = self.__send_and_receive(Operation.ReadMessages, request, extra)
        return response.messages if response.messages is not None else []

    def append_message(self, stream_name, data):
        """
        Appends data (bytes, at least one) to a stream.

        :return: the message's sequence number.
        """
        self.__check_closed()
        request = AppendMessageRequest(name=stream_name, payload=data)
        return self.__send_and_receive(Operation.AppendMessage, request).sequence_number

    def create_message_stream(self, definition):
        """Creates a stream (:class:`.data.MessageStreamDefinition`);
        InvalidRequestException if it exists."""
        self.__check_closed()
        if not isinstance(definition, MessageStreamDefinition):
            raise ValidationException("definition argument to create_stream must be a MessageStreamDefinition object")
        self.__send_and_receive(Operation.CreateMessageStream, CreateMessageStreamRequest(definition=definition))

    def delete_message_stream(self, stream_name):
        """Deletes a stream and its messages."""
        self.__check_closed()
        self.__send_and_receive(Operation.DeleteMessageStream, DeleteMessageStreamRequest(name=stream_name))

    def update_message_stream(self, definition):
        """Replaces a stream's definition; UpdateNotAllowedException for
        changes the server refuses (persistence, for one). Needs stream
        manager 1.1 (GGC 1.11)."""
        self.__check_closed()
        if not isinstance(definition, MessageStreamDefinition):
            raise ValidationException(
                "definition argument to update_message_stream must be a MessageStreamDefinition object")
        self.__send_and_receive(Operation.UpdateMessageStream, UpdateMessageStreamRequest(definition=definition))

    def list_streams(self):
        """The names of the streams."""
        self.__check_closed()
        streams = self.__send_and_receive(Operation.ListStreams, ListStreamsRequest()).streams
        return streams if streams is not None else []

    def describe_message_stream(self, stream_name):
        """A :class:`.data.MessageStreamInfo`: the definition, the stored
        range and the exports' progress."""
        self.__check_closed()
        return self.__send_and_receive(
            Operation.DescribeMessageStream, DescribeMessageStreamRequest(name=stream_name)).message_stream_info

    def close(self):
        """Closes the connection; calls in flight and later calls raise
        StreamManagerException. A closed client cannot be used again."""
        with self.__state_lock:
            if self.__closed:
                return
            self.__closed = True
            conn, self.__conn = self.__conn, None
        if conn is not None:
            conn.end(StreamManagerException, _CLOSED_MESSAGE)
            if conn.reader is not threading.current_thread():
                conn.reader.join(1.0)
