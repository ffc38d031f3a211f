"""A minimal HTTP/1.1 client for the core's loopback IPC endpoints.

The runtime and the SDKs call the core a few times per invocation; with
urllib.request each Python worker paid ~40 ms at start importing http.client,
email and ssl, and about a millisecond per call building an opener. This
client speaks just what the core's endpoints need, over a plain socket, and
sends the bytes urllib sent (v1's clients used urllib): header names as
urllib capitalizes them, its User-Agent and Accept-Encoding, and the form
Content-Type on a request with a body unless one is given. One connection
per request (Connection: close), as with urllib.
"""
import socket
import sys

USER_AGENT = 'Python-urllib/{}.{}'.format(*sys.version_info[:2])


class HTTPStatusError(Exception):
    """A response with status 400 or more: code, reason and body."""

    def __init__(self, code, reason, body):
        super().__init__('HTTP {} {}'.format(code, reason))
        self.code = code
        self.reason = reason
        self.body = body


class Headers:
    """Response headers; get() ignores the case of the name, as urllib's did."""

    def __init__(self, pairs):
        self._h = {}
        for k, v in pairs:
            self._h.setdefault(k.lower(), v)

    def get(self, name, default=None):
        return self._h.get(name.lower(), default)

    def __contains__(self, name):
        return name.lower() in self._h


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


def request(host, port, method, path, body=None, headers=None, timeout=None):
    """Sends one request and returns its Response; a status of 400 or more
    raises HTTPStatusError, a transport failure OSError (socket.timeout
    included), a malformed answer ValueError."""
    lines = ['{} {} HTTP/1.1'.format(method, path), 'Accept-Encoding: identity',
             'Host: {}:{}'.format(host, port), 'User-Agent: ' + USER_AGENT, 'Connection: close']
    given = {}
    for name, value in (headers or {}).items():
        given[name.capitalize()] = value
    if body is not None:
        given.setdefault('Content-type', 'application/x-www-form-urlencoded')
        given['Content-length'] = str(len(body))
    for name, value in given.items():
        if '\r' in value or '\n' in value:
            raise ValueError('header {} holds a line break'.format(name))
        lines.append('{}: {}'.format(name, value))
    data = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')
    if body:
        data += body
    sock = socket.create_connection((host, port), timeout)
    try:
        sock.sendall(data)
        f = sock.makefile('rb')
        try:
            return _read_response(f)
        finally:
            f.close()
    finally:
        sock.close()


def _read_response(f):
    status_line = f.readline(65537)
    parts = status_line.decode('latin-1').rstrip('\r\n').split(' ', 2)
    if len(parts) < 2 or not parts[0].startswith('HTTP/') or not parts[1].isdigit():
        raise ValueError('malformed status line {!r}'.format(status_line[:80]))
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ''
    pairs = []
    while True:
        line = f.readline(65537)
        if not line:
            raise ValueError('connection closed in the response headers')
        if line in (b'\r\n', b'\n'):
            break
        name, sep, value = line.decode('latin-1').partition(':')
        if not sep:
            raise ValueError('malformed header line {!r}'.format(line[:80]))
        pairs.append((name.strip(), value.strip()))
    headers = Headers(pairs)
    if (headers.get('Transfer-Encoding') or '').lower() == 'chunked':
        body = _read_chunked(f)
    elif headers.get('Content-Length') is not None:
        n = int(headers.get('Content-Length'))
        body = f.read(n)
        if len(body) != n:
            raise ValueError('response body cut short: {} of {} bytes'.format(len(body), n))
    else:
        body = f.read()
    if status >= 400:
        raise HTTPStatusError(status, reason, body)
    return Response(status, reason, headers, body)


def _read_chunked(f):
    out = []
    while True:
        line = f.readline(65537)
        if not line:
            raise ValueError('connection closed in a chunked body')
        size = int(line.split(b';', 1)[0].strip(), 16)
        if size == 0:
            # Trailers, then the blank line.
            while True:
                t = f.readline(65537)
                if t in (b'\r\n', b'\n', b''):
                    return b''.join(out)
        chunk = f.read(size)
        if len(chunk) != size:
            raise ValueError('chunked body cut short')
        out.append(chunk)
        f.readline(3)  # the CRLF after the chunk
