"""A stand-in for the core's IPC endpoints (spec 1.3), strict about what it
accepts, that records every request. It checks the bytes Python clients
send; the behaviour of the real daemon is tested against the Go server."""
import collections
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = '/2016-11-01/'

Request = collections.namedtuple('Request', 'method path headers body')


class FakeIPC:
    def __init__(self, token):
        self.token = token
        self.requests = []
        self.cond = threading.Condition()
        self.work = collections.deque()
        self.answers = {}
        self.fail_work_gets = 0
        self.closed = False
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.fake = self
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- scripting --------------------------------------------------------

    def enqueue_work(self, invocation_id, payload=b'', client_context=''):
        with self.cond:
            self.work.append((invocation_id, payload, client_context))
            self.cond.notify_all()

    def answer(self, invocation_id, payload, func_err=''):
        """What get_work_result returns for invocation_id."""
        with self.cond:
            self.answers[invocation_id] = (payload, func_err)

    # --- inspection -------------------------------------------------------

    def matching(self, method, path):
        with self.cond:
            return [r for r in self.requests if r.method == method and r.path == path]

    def wait_for(self, method, path, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [r for r in self.requests if r.method == method and r.path == path]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('timed out waiting for {} {}; saw {}'.format(
                        method, path, [(r.method, r.path) for r in self.requests]))
                self.cond.wait(left)

    def wait_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('timed out; saw {}'.format([(r.method, r.path) for r in self.requests]))
                self.cond.wait(left)

    def log_events(self):
        events = []
        for r in self.matching('POST', API + 'cloudwatch/logs/'):
            doc = json.loads(r.body)
            for e in doc['logEvents']:
                events.append((doc['logGroupName'], doc['logStreamName'], e['message']))
        return events

    # --- serving ----------------------------------------------------------

    def serve(self, h):
        length = int(h.headers.get('Content-Length') or 0)
        body = h.rfile.read(length) if length else b''
        req = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()

        if req.headers.get('authorization') != self.token:
            return h.reply(403, b'bad token')
        if not req.path.startswith(API) or '%' in req.path:
            return h.reply(404, b'not an IPC path')
        rest = req.path[len(API):]
        if rest == 'cloudwatch/logs/':
            return self._logs(h, req)
        if not rest.startswith('functions/'):
            return h.reply(404, b'unknown')
        parts = rest[len('functions/'):].split('/')
        arn = parts[0]
        if not arn.startswith('arn:aws:lambda:'):
            return h.reply(404, b'not a function ARN')
        if len(parts) == 1 and req.method == 'POST':
            return self._post_work(h, req)
        if len(parts) == 1 and req.method == 'GET':
            return self._get_work_result(h, req)
        if parts[1:] == ['work'] and req.method == 'GET':
            return self._get_work(h)
        if parts[1:] == ['work'] and req.method == 'POST':
            if not req.headers.get('x-amz-invocationid'):
                return h.reply(400, b'missing X-Amz-InvocationId')
            return h.reply(200, b'')
        if parts[1:] == ['initialized'] and req.method == 'PUT':
            doc = json.loads(req.body)
            if set(doc) != {'Success', 'Response'}:
                return h.reply(400, b'bad initialized body')
            return h.reply(200, b'')
        return h.reply(404, b'unknown')

    def _logs(self, h, req):
        doc = json.loads(req.body)
        if not {'logGroupName', 'logStreamName', 'logEvents'} <= set(doc):
            return h.reply(400, b'bad log body')
        return h.reply(200, b'')

    def _post_work(self, h, req):
        if req.headers.get('x-amz-invocation-type') not in ('RequestResponse', 'Event'):
            return h.reply(400, b'bad invocation type')
        if 'x-amz-client-context' not in req.headers:
            return h.reply(400, b'missing client context header')
        invocation_id = 'inv-{}'.format(next(self._ids))
        return h.reply(202, b'', {'X-Amz-InvocationId': invocation_id})

    def _get_work_result(self, h, req):
        invocation_id = req.headers.get('x-amz-invocationid')
        if not invocation_id:
            return h.reply(400, b'missing X-Amz-InvocationId')
        with self.cond:
            payload, func_err = self.answers.get(invocation_id, (b'', ''))
        # The header is always present, empty on success (spec 1.5);
        # func_err None scripts a core that breaks that rule.
        headers = {} if func_err is None else {'X-Amz-Function-Error': func_err}
        return h.reply(200, payload, headers)

    def _get_work(self, h):
        with self.cond:
            if self.fail_work_gets > 0:
                self.fail_work_gets -= 1
                return h.reply(503, b'not now')
            while not self.work and not self.closed:
                self.cond.wait()
            if self.closed:
                return h.reply(503, b'closing')
            invocation_id, payload, client_context = self.work.popleft()
        return h.reply(200, payload, {'X-Amz-InvocationId': invocation_id,
                                      'X-Amz-Client-Context': client_context})


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.fake.serve(self)

    do_POST = do_PUT = do_GET

    def reply(self, status, body, headers=None):
        try:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the runtime under test was stopped mid-poll

    def log_message(self, *args):
        pass
