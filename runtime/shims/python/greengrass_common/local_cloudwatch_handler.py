"""logging.Handler that ships records to the core's local log sink
(POST /2016-11-01/cloudwatch/logs/, spec 1.3 G and 1.11).

Records are queued and posted in batches by one background thread so a
chatty handler never waits on the core. Posting failures are dropped: the
same lines also reach stdout, which the core keeps.
"""
import collections
import json
import logging
import os
import threading
import time

from greengrass_common import ipc_http

LOG_STREAM_NAME = 'fromPythonAppender'
MAX_BATCH = 64
LEVEL_NAMES = {'WARNING': 'WARN', 'CRITICAL': 'FATAL'}
LOG_FORMAT = '[%(levelname)s]-%(filename)s:%(lineno)d,%(message)s'


class GreengrassFormatter(logging.Formatter):
    """The v1 line format with WARNING/CRITICAL spelled WARN/FATAL."""

    def __init__(self, fmt=LOG_FORMAT):
        super().__init__(fmt)

    def format(self, record):
        original = record.levelname
        record.levelname = LEVEL_NAMES.get(original, original)
        try:
            return super().format(record)
        finally:
            record.levelname = original


class LocalCloudwatchLogHandler(logging.Handler):
    def __init__(self, component_type, component_name, endpoint='localhost', port=None):
        super().__init__()
        self.log_group_name = '/{}/{}'.format(component_type, component_name)
        if port is None:
            port = os.environ.get('GG_DAEMON_PORT') or 8000
        self.endpoint, self.port = endpoint, int(port)
        self.url = 'http://{}:{}/2016-11-01/cloudwatch/logs/'.format(endpoint, port)
        # deque append/popleft are atomic, so emit() takes no lock a signal
        # handler could be interrupting.
        self._pending = collections.deque()
        self._wake = threading.Event()
        self._busy = False
        self._thread = None
        self._start_lock = threading.Lock()
        self.setFormatter(GreengrassFormatter())

    def emit(self, record):
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append({'timestamp': int(record.created * 1000), 'message': text})
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self):
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name='gg-log-sink', daemon=True)
                t.start()
                self._thread = t

    def _run(self):
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            self._drain()

    def _drain(self):
        while self._pending:
            self._busy = True
            batch = []
            while self._pending and len(batch) < MAX_BATCH:
                batch.append(self._pending.popleft())
            try:
                self._post(batch)
            finally:
                self._busy = False

    def _post(self, events):
        token = os.environ.get('AWS_CONTAINER_AUTHORIZATION_TOKEN')
        if not token:
            return
        body = json.dumps({
            'logGroupName': self.log_group_name,
            'logStreamName': LOG_STREAM_NAME,
            'logEvents': events,
        }).encode('utf-8')
        try:
            ipc_http.request(self.endpoint, self.port, 'POST', '/2016-11-01/cloudwatch/logs/', body,
                             {'Authorization': token, 'Content-Type': 'application/json'}, timeout=5)
        except Exception:
            pass

    def flush(self, timeout=2.0):
        """Wait until queued records are posted, at most timeout seconds."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while (self._pending or self._busy) and time.monotonic() < deadline:
            time.sleep(0.01)
