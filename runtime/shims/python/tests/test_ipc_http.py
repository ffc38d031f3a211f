"""greengrass_common.ipc_http against a raw socket server: the request
bytes urllib (v1's client) sent, and the response forms the core's Go
server uses (Content-Length, chunked, errors)."""
import socket
import sys
import threading
import unittest

import support  # noqa: F401 (puts the shims on sys.path)
from greengrass_common import ipc_http


class RawServer:
    """Accepts one connection per answer, records the request bytes, sends
    the canned response, closes."""

    def __init__(self, answers):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self.serve, args=(answers,), daemon=True)
        self.thread.start()

    def serve(self, answers):
        for answer in answers:
            conn, _ = self.sock.accept()
            with conn:
                data = b''
                while b'\r\n\r\n' not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b'\r\n\r\n')
                for line in head.split(b'\r\n'):
                    if line.lower().startswith(b'content-length:'):
                        n = int(line.split(b':')[1])
                        while len(body) < n:
                            body += conn.recv(65536)
                self.requests.append((head.decode('latin-1'), body))
                conn.sendall(answer)

    def close(self):
        self.sock.close()


class IPCHTTPTest(unittest.TestCase):
    def serve(self, *answers):
        s = RawServer(answers)
        self.addCleanup(s.close)
        return s

    def test_request_bytes_are_urllibs(self):
        s = self.serve(b'HTTP/1.1 200 OK\r\nX-Amz-Invocationid: inv-9\r\nContent-Length: 2\r\n\r\nok')
        r = ipc_http.request('127.0.0.1', s.port, 'POST', '/2016-11-01/functions/arn:aws:lambda:::function:GGRouter',
                             b'{"a":1}', {'Authorization': 'tok', 'X-Amz-Client-Context': 'e30=', 'X-Amz-Invocation-Type': 'Event'})
        self.assertEqual((r.status, r.body, r.headers.get('X-Amz-InvocationId')), (200, b'ok', 'inv-9'))
        head, body = s.requests[0]
        lines = head.split('\r\n')
        self.assertEqual(lines[0], 'POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1')
        self.assertEqual(body, b'{"a":1}')
        for want in ['Authorization: tok', 'X-amz-client-context: e30=', 'X-amz-invocation-type: Event',
                     'Content-type: application/x-www-form-urlencoded', 'Content-length: 7', 'Connection: close',
                     'Accept-Encoding: identity', 'User-Agent: Python-urllib/{}.{}'.format(*sys.version_info[:2]),
                     'Host: 127.0.0.1:{}'.format(s.port)]:
            self.assertIn(want, lines)

    def test_get_has_no_body_headers_and_a_given_content_type_stays(self):
        s = self.serve(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', b'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n')
        ipc_http.request('127.0.0.1', s.port, 'GET', '/w', None, {'Authorization': 't'})
        ipc_http.request('127.0.0.1', s.port, 'POST', '/logs', b'{}', {'Content-Type': 'application/json'})
        get_head = s.requests[0][0].lower()
        self.assertNotIn('content-length', get_head)
        self.assertNotIn('content-type', get_head)
        self.assertIn('Content-type: application/json', s.requests[1][0].split('\r\n'))

    def test_chunked_body(self):
        s = self.serve(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Amz-Function-Error: \r\n\r\n'
                       b'5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n')
        r = ipc_http.request('127.0.0.1', s.port, 'GET', '/r')
        self.assertEqual(r.body, b'hello, world')
        self.assertEqual(r.headers.get('x-amz-function-error'), '')
        self.assertIsNone(r.headers.get('X-Amz-Invocation-Id'))

    def test_large_body_and_body_until_close(self):
        big = bytes(range(256)) * 4096
        s = self.serve(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(big) + big,
                       b'HTTP/1.0 200 OK\r\n\r\nuntil close')
        self.assertEqual(ipc_http.request('127.0.0.1', s.port, 'GET', '/big').body, big)
        self.assertEqual(ipc_http.request('127.0.0.1', s.port, 'GET', '/old').body, b'until close')

    def test_error_status_raises_with_body(self):
        s = self.serve(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied')
        with self.assertRaises(ipc_http.HTTPStatusError) as cm:
            ipc_http.request('127.0.0.1', s.port, 'GET', '/x')
        self.assertEqual((cm.exception.code, cm.exception.body), (403, b'denied'))

    def test_cut_short_and_malformed_answers_raise(self):
        s = self.serve(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', b'garbage\r\n\r\n',
                       b'HTTP/1.1 200 OK\r\nX-Only-Headers: 1\r\n')
        for path in ['/short', '/garbage', '/headers']:
            with self.assertRaises(ValueError):
                ipc_http.request('127.0.0.1', s.port, 'GET', path)

    def test_connection_refused_is_oserror(self):
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
        sock.close()
        with self.assertRaises(OSError):
            ipc_http.request('127.0.0.1', port, 'GET', '/x')

    def test_header_with_line_break_refused(self):
        with self.assertRaises(ValueError):
            ipc_http.request('127.0.0.1', 1, 'GET', '/x', None, {'Authorization': 'a\r\nX-Evil: 1'})


if __name__ == '__main__':
    unittest.main()
