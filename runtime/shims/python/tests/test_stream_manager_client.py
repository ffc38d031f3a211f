"""StreamManagerClient against a scripted stand-in for the stream manager
that checks the bytes the client sends: the handshake, framing, requestId
matching across threads, timeouts, dropped connections and the mapping of
every status to v1's exceptions. Behaviour against the real Go server is
tested in streammgr/python_client_test.go."""
import asyncio
import logging
import os
import socket
import struct
import threading
import time
import unittest
import uuid
from unittest import mock

import support  # noqa: F401 (puts the shims on sys.path)
from greengrasssdk.stream_manager import (
    ExportDefinition, HTTPConfig, IoTSiteWiseConfig, Message, MessageStreamDefinition, MessageStreamInfo,
    Persistence, ReadMessagesOptions, StrategyOnFull, StreamManagerClient, cbor, exceptions, streammanagerclient)
from greengrasssdk.stream_manager.data import ResponseStatusCode

OPS = {'Connect': 1, 'CreateMessageStream': 2, 'DeleteMessageStream': 3, 'AppendMessage': 4, 'ReadMessages': 5,
       'ConnectResponse': 6, 'ListStreams': 11, 'DescribeMessageStream': 13, 'UpdateMessageStream': 15,
       'UnknownOperationError': 17}


def setUpModule():
    # The client logs what it fails on; the assertions here cover it.
    logger = logging.getLogger('StreamManagerClient')
    logger.propagate = False
    logger.addHandler(logging.NullHandler())


def tearDownModule():
    logging.getLogger('StreamManagerClient').propagate = True


def recv_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def frame(op, body):
    payload = body if isinstance(body, bytes) else cbor.dumps(body)
    return struct.pack('>iB', len(payload) + 1, op) + payload


class Conn(object):
    """One accepted connection of the fake server."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, op, body):
        with self.lock:
            self.sock.sendall(frame(op, body))

    def reply(self, request, body, op=None):
        """Answers request (op, body) with its response op (op + 5 for the
        first five codes, op + 1 after), echoing its requestId."""
        req_op, req = request
        if op is None:
            op = req_op + 5 if req_op <= 5 else req_op + 1
        out = {'requestId': req['requestId']}
        out.update(body)
        self.send(op, out)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakeStreamManager(object):
    """Accepts connections, checks and records the handshake, and hands each
    request (op, decoded map) to handle(conn, request); by default every
    request succeeds with an empty answer."""

    def __init__(self, handle=None, connect_status=0, connect_error=None, version_byte=1, answer_connect=True):
        self.handle = handle or (lambda conn, request: conn.reply(request, {'status': 0}))
        self.connect_status = connect_status
        self.connect_error = connect_error
        self.version_byte = version_byte
        self.answer_connect = answer_connect
        self.connects = []
        self.raw_connects = []
        self.requests = []
        self.conns = []
        self.cond = threading.Condition()
        self.listener = socket.create_server(('127.0.0.1', 0)) if hasattr(socket, 'create_server') else None
        if self.listener is None:
            self.listener = socket.socket()
            self.listener.bind(('127.0.0.1', 0))
            self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.listener.close()
        for c in list(self.conns):
            c.close()

    def _accept(self):
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = Conn(self, sock)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            version = recv_exact(conn.sock, 1)
            length = struct.unpack('>i', recv_exact(conn.sock, 4))[0]
            op = recv_exact(conn.sock, 1)[0]
            payload = recv_exact(conn.sock, length - 1)
            connect = cbor.loads(payload)
            with self.cond:
                self.raw_connects.append((version, op))
                self.connects.append(connect)
                self.cond.notify_all()
            if not self.answer_connect:
                recv_exact(conn.sock, 1)  # until the client gives up
                return
            body = {'requestId': connect['requestId'], 'status': self.connect_status, 'protocolVersion': '1.1.0',
                    'supportedProtocolVersions': ['1.0.0', '1.1.0'], 'serverVersion': '1.1.0',
                    'clientIdentifier': 'fake'}
            if self.connect_error:
                body['errorMessage'] = self.connect_error
            conn.sock.sendall(bytes((self.version_byte,)) + frame(6, body))
            if self.connect_status != 0:
                conn.close()
                return
            while True:
                length = struct.unpack('>i', recv_exact(conn.sock, 4))[0]
                op = recv_exact(conn.sock, 1)[0]
                request = (op, cbor.loads(recv_exact(conn.sock, length - 1)))
                with self.cond:
                    self.requests.append(request)
                    self.cond.notify_all()
                self.handle(conn, request)
        except (EOFError, OSError):
            return

    def wait_requests(self, n, timeout=5.0):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError('{} requests arrived, {} expected'.format(len(self.requests), n))
            return list(self.requests)


class ClientTestCase(unittest.TestCase):
    def serve(self, **kw):
        fake = FakeStreamManager(**kw)
        self.addCleanup(fake.close)
        return fake

    def client(self, fake, **kw):
        c = StreamManagerClient(port=fake.port, **kw)
        self.addCleanup(c.close)
        return c


class HandshakeTest(ClientTestCase):
    def test_environment_gives_port_and_token(self):
        fake = self.serve()
        with mock.patch.dict(os.environ, {'STREAM_MANAGER_SERVER_PORT': str(fake.port),
                                          'AWS_CONTAINER_AUTHORIZATION_TOKEN': 'worker-token'}):
            c = StreamManagerClient()
            self.addCleanup(c.close)
        self.assertEqual((c.host, c.port, c.connect_timeout, c.request_timeout, c.auth_token),
                         ('127.0.0.1', fake.port, 3, 60, 'worker-token'))
        self.assertTrue(c.connected)
        self.assertEqual(fake.raw_connects, [(b'\x01', 1)])
        connect = fake.connects[0]
        self.assertEqual(str(uuid.UUID(connect.pop('requestId'))).count('-'), 4)
        self.assertEqual(connect, {'protocolVersion': '1.1.0', 'otherSupportedProtocolVersions': ['1.0.0'],
                                   'sdkVersion': '1.1.1', 'authToken': 'worker-token'})

    def test_no_token_sends_none(self):
        fake = self.serve()
        env = dict(os.environ)
        env.pop('AWS_CONTAINER_AUTHORIZATION_TOKEN', None)
        with mock.patch.dict(os.environ, env, clear=True):
            self.client(fake)
        self.assertNotIn('authToken', fake.connects[0])

    def test_refused_connect_is_connect_failed_with_the_status(self):
        fake = self.serve(connect_status=2, connect_error='the authToken was not issued to a running function')
        with self.assertRaises(exceptions.ConnectFailedException) as cm:
            StreamManagerClient(port=fake.port)
        self.assertIs(cm.exception.status, ResponseStatusCode.Unauthorized)
        self.assertEqual(cm.exception.request_id, fake.connects[0]['requestId'])
        self.assertIn('Unauthorized: the authToken was not issued to a running function', str(cm.exception))

    def test_wrong_connect_version_fails(self):
        fake = self.serve(version_byte=2)
        with self.assertRaisesRegex(exceptions.ConnectFailedException, 'connect version 2'):
            StreamManagerClient(port=fake.port)

    def test_nothing_listening_is_a_connection_error(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(ConnectionError):
            StreamManagerClient(port=port)

    def test_silent_server_times_out(self):
        fake = self.serve(answer_connect=False)
        start = time.monotonic()
        with self.assertRaises(asyncio.TimeoutError):
            StreamManagerClient(port=fake.port, request_timeout=0.3)
        self.assertLess(time.monotonic() - start, 3)

    def test_bad_settings_are_refused(self):
        with mock.patch.dict(os.environ, {'STREAM_MANAGER_SERVER_PORT': 'eighty'}):
            with self.assertRaisesRegex(exceptions.ValidationException, 'STREAM_MANAGER_SERVER_PORT'):
                StreamManagerClient()
        for kw in ({'request_timeout': 0}, {'connect_timeout': -1}, {'request_timeout': '60'}):
            with self.assertRaises(exceptions.ValidationException):
                StreamManagerClient(port=1, **kw)


class RequestTest(ClientTestCase):
    def test_requests_on_the_wire(self):
        def handle(conn, request):
            op, body = request
            extra = {1: {}, 4: {'sequenceNumber': 41}, 11: {'streams': ['a', 'b']},
                     5: {'messages': [{'streamName': 's', 'sequenceNumber': 41, 'ingestTime': 1700000000000,
                                       'payload': b'\x00\xff'}]},
                     13: {'messageStreamInfo': {
                         'definition': {'name': 's', 'maxSize': 2048, 'streamSegmentSize': 1024, 'strategyOnFull': 1,
                                        'persistence': 1, 'flushOnWrite': False},
                         'storageStatus': {'oldestSequenceNumber': 0, 'newestSequenceNumber': 41, 'totalBytes': 84},
                         'exportStatuses': []}}}
            body = {'status': 0}
            body.update(extra.get(op, {}))
            conn.reply(request, body)

        fake = self.serve(handle=handle)
        c = self.client(fake)
        d = MessageStreamDefinition(name='s', max_size=2048, stream_segment_size=1024,
                                    strategy_on_full=StrategyOnFull.OverwriteOldestData, persistence=Persistence.Memory,
                                    export_definition=ExportDefinition(
                                        http=[HTTPConfig(identifier='h', uri='http://x')],
                                        iot_sitewise=[IoTSiteWiseConfig(identifier='sw')]))
        self.assertIsNone(c.create_message_stream(d))
        self.assertEqual(c.append_message('s', b'\x00\xff'), 41)
        msgs = c.read_messages('s', ReadMessagesOptions(desired_start_sequence_number=41, max_message_count=3,
                                                         read_timeout_millis=100))
        self.assertEqual(len(msgs), 1)
        self.assertIsInstance(msgs[0], Message)
        self.assertEqual((msgs[0].stream_name, msgs[0].sequence_number, msgs[0].ingest_time, msgs[0].payload),
                         ('s', 41, 1700000000000, b'\x00\xff'))
        self.assertEqual(c.read_messages('s')[0].sequence_number, 41)
        self.assertEqual(c.list_streams(), ['a', 'b'])
        info = c.describe_message_stream('s')
        self.assertIsInstance(info, MessageStreamInfo)
        self.assertEqual((info.definition.persistence, info.storage_status.newest_sequence_number, info.export_statuses),
                         (Persistence.Memory, 41, []))
        self.assertIsNone(c.update_message_stream(d))
        self.assertIsNone(c.delete_message_stream('s'))

        reqs = fake.wait_requests(8)
        ids = [body.pop('requestId') for _, body in reqs]
        self.assertEqual(len(set(ids)), 8)
        for i in ids:
            uuid.UUID(i)
        wire_def = {'name': 's', 'maxSize': 2048, 'streamSegmentSize': 1024, 'strategyOnFull': 1, 'persistence': 1,
                    'exportDefinition': {'http': [{'identifier': 'h', 'uri': 'http://x'}],
                                         'IotSitewise': [{'identifier': 'sw'}]}}
        self.assertEqual(reqs, [
            (2, {'definition': wire_def}),
            (4, {'name': 's', 'payload': b'\x00\xff'}),
            (5, {'streamName': 's', 'readMessagesOptions': {'desiredStartSequenceNumber': 41, 'minMessageCount': 1,
                                                            'maxMessageCount': 3, 'readTimeoutMillis': 100}}),
            (5, {'streamName': 's'}),
            (11, {}),
            (13, {'name': 's'}),
            (15, {'definition': wire_def}),
            (3, {'name': 's'}),
        ])

    def test_invalid_requests_are_not_sent(self):
        fake = self.serve()
        c = self.client(fake, request_timeout=5)
        calls = [
            (lambda: c.read_messages('s', ReadMessagesOptions(min_message_count=3, max_message_count=2)),
             'min_message_count must be less than or equal to max_message_count'),
            (lambda: c.read_messages('s', ReadMessagesOptions(read_timeout_millis=5001)),
             "read_timeout_millis must be less than or equal to the client's request_timeout"),
            (lambda: c.read_messages('s', {'minMessageCount': 1}), 'must be a ReadMessageOptions object'),
            (lambda: c.read_messages('s', ReadMessagesOptions(max_message_count=0)),
             'Property max_message_count must be at least 1'),
            (lambda: c.read_messages('a/b'), 'Property stream_name must match regex'),
            (lambda: c.append_message('s', b''), 'Property payload must have a minimum length of 1'),
            (lambda: c.append_message('s', 'text'), 'Property payload is invalid because it must be of type bytes'),
            (lambda: c.append_message('', b'x'), 'Property name must have a minimum length of 1'),
            (lambda: c.create_message_stream({'name': 's'}), 'must be a MessageStreamDefinition object'),
            (lambda: c.update_message_stream(None), 'must be a MessageStreamDefinition object'),
            (lambda: c.create_message_stream(MessageStreamDefinition(name='s')),
             'Property definition is invalid because Property strategy_on_full is required, but was None'),
            (lambda: c.delete_message_stream('x' * 256), 'Property name must have a maximum length of 255'),
            (lambda: c.describe_message_stream(None), 'Property name is required, but was None'),
        ]
        for call, message in calls:
            with self.subTest(message=message):
                with self.assertRaises(exceptions.ValidationException) as cm:
                    call()
                self.assertIn(message, str(cm.exception))
                self.assertIsNone(cm.exception.status)
        c.list_streams()
        self.assertEqual([op for op, _ in fake.wait_requests(1)], [11])

    def test_request_payload_too_large(self):
        fake = self.serve()
        c = self.client(fake)
        with mock.patch.object(streammanagerclient, 'MAX_FRAME', 100):
            with self.assertRaises(exceptions.RequestPayloadTooLargeException):
                c.append_message('s', b'x' * 100)
        c.list_streams()
        self.assertEqual([op for op, _ in fake.wait_requests(1)], [11])

    def test_every_status_raises_v1s_exception(self):
        want = {
            1: exceptions.UnknownFailureException, 2: exceptions.UnauthorizedException,
            3: exceptions.InvalidRequestException, 4: exceptions.RequestPayloadTooLargeException,
            5: exceptions.ResourceNotFoundException, 6: exceptions.ServerTimeoutException,
            7: exceptions.ResponsePayloadTooLargeException, 8: exceptions.StreamManagerException,
            9: exceptions.StreamManagerException, 10: exceptions.StreamManagerException,
            11: exceptions.StreamManagerException, 12: exceptions.StreamManagerException,
            13: exceptions.NotEnoughMessagesException, 14: exceptions.MessageStoreReadErrorException,
            15: exceptions.ServerOutOfMemoryException, 16: exceptions.UpdateFailedException,
            17: exceptions.UpdateNotAllowedException, 18: exceptions.UnknownOperationException,
        }
        fake = self.serve(handle=lambda conn, request: conn.reply(
            request, {'status': int(request[1]['name']), 'errorMessage': 'code ' + request[1]['name']}))
        c = self.client(fake)
        for code, cls in want.items():
            with self.subTest(code=code):
                with self.assertRaises(exceptions.StreamManagerException) as cm:
                    c.append_message(str(code), b'x')
                self.assertIs(type(cm.exception), cls)
                self.assertIs(cm.exception.status, ResponseStatusCode(code))
                self.assertEqual(cm.exception.message, 'code {}'.format(code))
                self.assertEqual(cm.exception.request_id, fake.requests[-1][1]['requestId'])
        with self.assertRaises(exceptions.StreamManagerException) as cm:
            c.append_message('99', b'x')
        self.assertIs(type(cm.exception), exceptions.StreamManagerException)
        self.assertEqual((cm.exception.message, cm.exception.status),
                         ('Client is not able to understand this server response status code', 'Unrecognized'))
        with self.assertRaises(exceptions.InvalidRequestException):
            c.append_message('17', b'x')  # UpdateNotAllowedException is an InvalidRequestException

    def test_unknown_operation_answers(self):
        def handle(conn, request):
            if request[0] == 15:
                conn.reply(request, {'status': 18, 'errorMessage': 'unsupported operation'}, op=17)
            else:
                conn.reply(request, {'status': 0}, op=99)

        fake = self.serve(handle=handle)
        c = self.client(fake)
        with self.assertRaises(exceptions.UnknownOperationException) as cm:
            c.update_message_stream(MessageStreamDefinition(name='s', strategy_on_full=StrategyOnFull.RejectNewData))
        self.assertEqual(cm.exception.message, 'unsupported operation')
        with self.assertRaisesRegex(exceptions.ClientException, 'unknown operation'):
            c.list_streams()

    def test_indefinite_length_answers_decode(self):
        def handle(conn, request):
            rid = cbor.dumps(request[1]['requestId'])
            # {_ "requestId": id, "status": 0, "messages": [_ {_ "streamName": "s", "sequenceNumber": 7,
            #    "payload": (_ h'6869', h'21') } ] }
            body = (b'\xbf' + cbor.dumps('requestId') + rid + cbor.dumps('status') + b'\x00' +
                    cbor.dumps('messages') + b'\x9f\xbf' + cbor.dumps('streamName') + cbor.dumps('s') +
                    cbor.dumps('sequenceNumber') + b'\x07' + cbor.dumps('payload') + b'\x5f\x42hi\x41!\xff' +
                    b'\xff\xff\xff')
            conn.send(10, body)

        fake = self.serve(handle=handle)
        c = self.client(fake)
        m = c.read_messages('s')[0]
        self.assertEqual((m.stream_name, m.sequence_number, m.payload), ('s', 7, b'hi!'))


class ConcurrencyTest(ClientTestCase):
    def test_calls_from_many_threads_get_their_own_answers(self):
        held, lock = [], threading.Lock()

        def handle(conn, request):
            # Hold the first 8 appends, then answer them in reverse order.
            with lock:
                held.append(request)
                if len(held) < 8:
                    return
                batch = list(reversed(held))
                del held[:]
            for r in batch:
                conn.reply(r, {'status': 0, 'sequenceNumber': int(r[1]['payload'])})

        fake = self.serve(handle=handle)
        c = self.client(fake)
        got = {}

        def append(n):
            got[n] = c.append_message('s', str(n).encode())

        threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(got, {n: n for n in range(8)})
        self.assertEqual(len(fake.conns), 1)

    def test_a_long_poll_holds_up_nothing(self):
        polls = []

        def handle(conn, request):
            if request[0] == 5:
                polls.append((conn, request))
            else:
                conn.reply(request, {'status': 0, 'streams': ['s']})

        fake = self.serve(handle=handle)
        c = self.client(fake, request_timeout=5)
        result = {}
        poller = threading.Thread(target=lambda: result.setdefault('msgs', c.read_messages(
            's', ReadMessagesOptions(read_timeout_millis=5000))))
        poller.start()
        fake.wait_requests(1)
        self.assertEqual(c.list_streams(), ['s'])
        self.assertTrue(poller.is_alive())
        conn, request = polls[0]
        conn.reply(request, {'status': 0, 'messages': [{'streamName': 's', 'sequenceNumber': 0, 'payload': b'x'}]})
        poller.join(5)
        self.assertEqual([m.payload for m in result['msgs']], [b'x'])


class FailureTest(ClientTestCase):
    def test_unanswered_request_times_out_and_the_client_goes_on(self):
        pending = []

        def handle(conn, request):
            if request[1].get('name') == 'slow':
                pending.append((conn, request))
            else:
                conn.reply(request, {'status': 0, 'sequenceNumber': 1})

        fake = self.serve(handle=handle)
        c = self.client(fake, request_timeout=0.3)
        start = time.monotonic()
        with self.assertRaises(asyncio.TimeoutError):
            c.append_message('slow', b'x')
        self.assertGreaterEqual(time.monotonic() - start, 0.29)
        # The late answer is dropped; the next call gets its own.
        conn, request = pending[0]
        conn.reply(request, {'status': 0, 'sequenceNumber': 99})
        self.assertEqual(c.append_message('fast', b'x'), 1)

    def test_a_read_waits_its_read_timeout_on_top(self):
        def handle(conn, request):
            threading.Timer(0.5, conn.reply, args=(request, {'status': 0, 'messages': [
                {'streamName': 's', 'sequenceNumber': 0, 'payload': b'x'}]})).start()

        fake = self.serve(handle=handle)
        c = self.client(fake, request_timeout=0.4)
        msgs = c.read_messages('s', ReadMessagesOptions(read_timeout_millis=400))
        self.assertEqual(len(msgs), 1)

    def test_a_dropped_connection_fails_calls_in_flight_and_the_next_call_reconnects(self):
        def handle(conn, request):
            if request[1].get('name') == 'drop':
                conn.close()
            else:
                conn.reply(request, {'status': 0, 'sequenceNumber': 5})

        fake = self.serve(handle=handle)
        c = self.client(fake)
        with self.assertRaises(ConnectionError):
            c.append_message('drop', b'x')
        self.assertEqual(c.append_message('s', b'x'), 5)
        self.assertEqual(len(fake.connects), 2)
        self.assertTrue(c.connected)

    def test_close_fails_calls_in_flight_and_later_calls(self):
        fake = self.serve(handle=lambda conn, request: None)
        c = StreamManagerClient(port=fake.port)
        errors = []

        def call():
            try:
                c.list_streams()
            except Exception as e:  # noqa: B902
                errors.append(e)

        t = threading.Thread(target=call)
        t.start()
        fake.wait_requests(1)
        c.close()
        t.join(5)
        self.assertEqual(len(errors), 1)
        self.assertIs(type(errors[0]), exceptions.StreamManagerException)
        self.assertIn('closed', str(errors[0]))
        with self.assertRaisesRegex(exceptions.StreamManagerException, 'Client is closed'):
            c.list_streams()
        self.assertFalse(c.connected)
        c.close()

    def test_context_manager_closes(self):
        fake = self.serve()
        with StreamManagerClient(port=fake.port) as c:
            c.list_streams()
        with self.assertRaises(exceptions.StreamManagerException):
            c.list_streams()
        for conn in fake.conns:
            with self.assertRaises((EOFError, OSError)):
                conn.sock.settimeout(2)
                recv_exact(conn.sock, 1)


if __name__ == '__main__':
    unittest.main()
