"""Greengrass v1 Python Lambda runtime, as provided by Evergreen.

    python3 lambda_runtime.py --handler=module.function

The core starts this in the function's code directory. It imports the
handler once, reports the outcome to the core (PUT .../initialized), then
loops: fetch a work item (long poll), call handler(event, context), post the
result or the error. SIGTERM stops it with exit status 0.
"""
import argparse
import base64
import binascii
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback

RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
if RUNTIME_DIR not in sys.path:
    sys.path.insert(0, RUNTIME_DIR)

from greengrass_common.function_arn_fields import FunctionArnFields  # noqa: E402
from greengrass_common.local_cloudwatch_handler import GreengrassFormatter, LocalCloudwatchLogHandler  # noqa: E402
from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException, WorkItem  # noqa: E402
from greengrass_ipc_python_sdk.utils.exponential_backoff import retry  # noqa: E402

ENCODINGS = ('json', 'binary')
DEFAULT_TIMEOUT_MS = 3000
# How long the core may be unreachable before the worker gives up; the
# core restarts workers it needs, so an orphan must not linger.
GIVE_UP_AFTER_S = 60.0


class RuntimeConfig:
    def __init__(self, environ):
        self.function_arn = environ.get('MY_FUNCTION_ARN') or ''
        self.auth_token = environ.get('AWS_CONTAINER_AUTHORIZATION_TOKEN') or ''
        self.encoding = environ.get('ENCODING_TYPE') or ''
        self.max_interface_version = environ.get('GGC_MAX_INTERFACE_VERSION') or ''
        self.timeout_ms = _positive_int(environ.get('EVERGREEN_FUNCTION_TIMEOUT_MS')) or DEFAULT_TIMEOUT_MS
        self.memory_limit_in_mb = _positive_int(environ.get('EVERGREEN_FUNCTION_MEMORY_MB'))

    def problems(self):
        found = []
        if not self.function_arn:
            found.append('MY_FUNCTION_ARN is not set')
        else:
            try:
                FunctionArnFields(self.function_arn)
            except ValueError as e:
                found.append(str(e))
        if not self.auth_token:
            found.append('AWS_CONTAINER_AUTHORIZATION_TOKEN is not set')
        if self.encoding not in ENCODINGS:
            found.append('ENCODING_TYPE must be json or binary, got "{}"'.format(self.encoding))
        if _parse_version(self.max_interface_version) is None:
            found.append('GGC_MAX_INTERFACE_VERSION must be major.minor, got "{}"'.format(self.max_interface_version))
        return found


def _positive_int(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _parse_version(text):
    parts = (text or '').split('.')
    if len(parts) < 2:
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


def interface_version_problem(max_version, sdk_version):
    """The SDK a function imports must share the core's major interface
    version and not exceed its minor one."""
    core, sdk = _parse_version(max_version), _parse_version(sdk_version)
    if core is None or sdk is None:
        return None
    if sdk[0] != core[0] or sdk[1] > core[1]:
        return 'Greengrass SDK interface version {} is not supported by this core (maximum {})'.format(
            sdk_version, max_version)
    return None


class ClientContext:
    """context.client_context: .custom is what invokers (and the router, with
    'subject' = the MQTT topic) put under "custom"."""

    def __init__(self, custom=None, client=None, env=None):
        self.custom = custom if custom is not None else {}
        self.client = client if client is not None else {}
        self.env = env if env is not None else {}

    def __repr__(self):
        return 'ClientContext(custom={!r}, client={!r}, env={!r})'.format(self.custom, self.client, self.env)


def decode_client_context(encoded):
    """Decodes X-Amz-Client-Context (base64 JSON); anything unreadable is an
    empty context, so handlers can always read .custom."""
    doc = {}
    if encoded:
        try:
            decoded = json.loads(base64.b64decode(encoded).decode('utf-8'))
            if isinstance(decoded, dict):
                doc = decoded
        except (binascii.Error, ValueError, UnicodeDecodeError):
            logging.warning('Ignoring a client context that is not base64 JSON')
    custom = doc.get('custom')
    return ClientContext(custom=custom if isinstance(custom, dict) else {},
                         client=doc.get('client'), env=doc.get('env'))


class LambdaContext:
    def __init__(self, function_arn, invocation_id, client_context, deadline, memory_limit_in_mb, log_group_name):
        fields = FunctionArnFields(function_arn)
        self.function_name = fields.name
        self.function_version = fields.qualifier or '$LATEST'
        self.invoked_function_arn = function_arn
        self.aws_request_id = invocation_id
        self.client_context = client_context
        self.identity = None
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = log_group_name
        self.log_stream_name = 'fromPythonAppender'
        self._deadline = deadline

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def decode_event(payload, encoding):
    if encoding == 'binary':
        return payload
    if not payload:
        return {}
    return json.loads(payload.decode('utf-8'))


def encode_result(result, encoding):
    if encoding == 'binary':
        if result is None:
            return b''
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result)
        if isinstance(result, str):
            return result.encode('utf-8')
    return json.dumps(result).encode('utf-8')


def user_traceback(err):
    """err's traceback without the runtime's own leading frames."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def error_document(err):
    return {
        'errorMessage': str(err),
        'errorType': type(err).__name__,
        'stackTrace': traceback.format_list(traceback.extract_tb(user_traceback(err))),
    }


def log_group_for(function_arn):
    try:
        fields = FunctionArnFields(function_arn)
    except ValueError:
        return 'GreengrassSystem', 'python_runtime'
    if not fields.region or not fields.account_id:
        return 'GreengrassSystem', fields.name
    return 'Lambda', '{}/{}/{}'.format(fields.region, fields.account_id, fields.name)


# The group's Lambda FileSystem logger levels (EVERGREEN_LAMBDA_LOG_LEVEL).
FILE_LEVELS = {'DEBUG': logging.DEBUG, 'INFO': logging.INFO, 'WARN': logging.WARNING,
               'ERROR': logging.ERROR, 'FATAL': logging.CRITICAL}


def setup_logging(function_arn):
    """Root logger -> stdout and the core's log sink, both in the v1 line format.

    stdout is the function's log file: records below the Lambda FileSystem
    logger's level (EVERGREEN_LAMBDA_LOG_LEVEL, default INFO) do not go
    there. The sink gets INFO and above (DEBUG too when the file level is
    DEBUG); the core filters them for the AWSCloudWatch logger.
    """
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    file_level = FILE_LEVELS.get((os.environ.get('EVERGREEN_LAMBDA_LOG_LEVEL') or '').upper(), logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(GreengrassFormatter())
    out.setLevel(file_level)
    root.addHandler(out)
    sink = LocalCloudwatchLogHandler(*log_group_for(function_arn))
    root.addHandler(sink)
    root.setLevel(min(logging.INFO, file_level))
    return sink


class Runtime:
    def __init__(self, handler_name, config, ipc, sink):
        self.handler_name = handler_name
        self.config = config
        self.ipc = ipc
        self.sink = sink
        self.handler = None

    def exit(self, status):
        self.sink.flush()
        sys.stdout.flush()
        sys.exit(status)

    def on_sigterm(self, signum, frame):
        try:
            logging.info('Caught SIGTERM. Stopping runtime.')
            self.sink.flush(1.0)
            sys.stdout.flush()
        except BaseException:
            pass
        finally:
            os._exit(0)

    def report_init(self, err):
        try:
            self.ipc.put_initialization_result(self.config.function_arn, err)
        except IPCException as e:
            logging.error('Failed to report initialization to the core: %s', e)

    def load_handler(self):
        module_name, _, function_name = self.handler_name.rpartition('.')
        try:
            if not module_name or not function_name:
                raise ValueError('handler "{}" is not of the form module.function'.format(self.handler_name))
            # The function's own modules (and any greengrasssdk it bundles)
            # come before the core-provided ones.
            cwd = os.getcwd()
            sys.path[:] = [cwd] + [p for p in sys.path if p not in ('', cwd)]
            module = importlib.import_module(module_name)
            handler = getattr(module, function_name)
            if not callable(handler):
                raise TypeError('{} is not callable'.format(self.handler_name))
            sdk = sys.modules.get('greengrasssdk')
            problem = interface_version_problem(self.config.max_interface_version,
                                                getattr(sdk, 'INTERFACE_VERSION', None))
            if problem:
                raise ImportError(problem)
        except (Exception, SystemExit) as e:
            logging.critical('Failed to import handler function "%s" due to exception: %s', self.handler_name, e)
            logging.error(''.join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
            self.report_init(e)
            self.exit(1)
        self.handler = handler

    def next_work(self):
        failing = []

        def note(err, delay):
            if not failing:
                logging.warning('Failed to get work from the core, retrying: %s', err)
            failing.append(err)

        return retry(lambda: self.ipc.get_work(self.config.function_arn), retry_on=(IPCException,),
                     max_elapsed=GIVE_UP_AFTER_S, on_retry=note)

    def handle(self, item, started):
        context = LambdaContext(
            self.config.function_arn, item.invocation_id, decode_client_context(item.client_context),
            started + self.config.timeout_ms / 1000.0, self.config.memory_limit_in_mb,
            '/{}/{}'.format(*log_group_for(self.config.function_arn)))
        arn = self.config.function_arn
        try:
            event = decode_event(item.payload, self.config.encoding)
            body = encode_result(self.handler(event, context), self.config.encoding)
        except Exception as e:
            logging.error('Handler "%s" failed: %s', self.handler_name,
                          ''.join(traceback.format_exception(type(e), e, user_traceback(e))).rstrip())
            doc = error_document(e)
            post = lambda: self.ipc.post_handler_err(arn, item.invocation_id, doc)  # noqa: E731
        else:
            post = lambda: self.ipc.post_work_result(arn, WorkItem(item.invocation_id, body, item.client_context))  # noqa: E731
        try:
            retry(post, retry_on=(IPCException,), max_elapsed=5.0)
        except IPCException as e:
            logging.error('Failed to post the result of invocation %s: %s', item.invocation_id, e)

    def serve(self):
        while True:
            try:
                item = self.next_work()
            except IPCException as e:
                logging.critical('Giving up: the core has not answered for %ds: %s', GIVE_UP_AFTER_S, e)
                self.exit(1)
            self.handle(item, time.monotonic())


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='lambda_runtime.py')
    parser.add_argument('--handler', required=True, help='module.function to call for each work item')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = RuntimeConfig(os.environ)
    sink = setup_logging(config.function_arn)
    ipc = IPCClient()
    runtime = Runtime(args.handler, config, ipc, sink)
    signal.signal(signal.SIGTERM, runtime.on_sigterm)

    problems = config.problems()
    if problems:
        for p in problems:
            logging.critical('Cannot start the runtime: %s', p)
        if config.function_arn and config.auth_token:
            runtime.report_init(ValueError('; '.join(problems)))
        runtime.exit(1)

    runtime.load_handler()
    runtime.report_init(None)
    runtime.serve()


if __name__ == '__main__':
    main()
