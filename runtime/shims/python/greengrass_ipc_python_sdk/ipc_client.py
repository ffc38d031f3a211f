"""Client of the core's Lambda IPC endpoints (spec 1.3 A-F).

Every request carries the function's token in Authorization. Function ARNs
go into the path unescaped: the core routes by splitting on '/', which ARNs
never contain. Requests go through greengrass_common.ipc_http, which sends
the bytes urllib (v1's client) sent: header-name casing, form Content-Type
on POST, without urllib's cost at import and per call.
"""
import json
import logging
import os

from greengrass_common import ipc_http
from greengrass_common.env_vars import ROUTER_FUNCTION_ARN

API_VERSION = '2016-11-01'
HEADER_AUTHORIZATION = 'Authorization'
HEADER_CLIENT_CONTEXT = 'X-Amz-Client-Context'
HEADER_INVOCATION_TYPE = 'X-Amz-Invocation-Type'
HEADER_INVOCATION_ID = 'X-Amz-InvocationId'
HEADER_FUNCTION_ERROR = 'X-Amz-Function-Error'
# The router never answers a get_work_result; publishes are Events.
GGROUTER_ARN = 'arn:aws:lambda:::function:GGRouter'

runtime_logger = logging.getLogger(__name__)


class IPCException(Exception):
    pass


class WorkItem:
    def __init__(self, invocation_id, payload, client_context):
        self.invocation_id = invocation_id
        self.payload = payload
        self.client_context = client_context

    def __repr__(self):
        return 'WorkItem(invocation_id={!r}, payload={!r}, client_context={!r})'.format(
            self.invocation_id, self.payload, self.client_context)


class GetWorkResultOutput:
    def __init__(self, payload, func_err):
        self.payload = payload
        self.func_err = func_err

    def __repr__(self):
        return 'GetWorkResultOutput(payload={!r}, func_err={!r})'.format(self.payload, self.func_err)


def _to_bytes(data):
    if data is None:
        return b''
    if isinstance(data, str):
        return data.encode('utf-8')
    return bytes(data)


def _to_header(value):
    if value is None:
        return ''
    if isinstance(value, bytes):
        return value.decode('ascii')
    return value


def render_exception(err):
    """ClassName("message"), the form /initialized reports failures in."""
    if isinstance(err, BaseException):
        return '{}("{}")'.format(type(err).__name__, err)
    return str(err)


class IPCClient:
    def __init__(self, endpoint='localhost', port=None):
        if port is None:
            port = os.environ.get('GG_DAEMON_PORT') or 8000
        self.endpoint = endpoint
        self.port = int(port)
        self.auth_token = os.environ.get('AWS_CONTAINER_AUTHORIZATION_TOKEN')

    def post_work(self, function_arn, input_bytes, client_context, invocation_type='RequestResponse'):
        """Queues work for function_arn (spec A); returns the invocation id."""
        headers = {
            HEADER_CLIENT_CONTEXT: _to_header(client_context),
            HEADER_INVOCATION_TYPE: invocation_type,
        }
        resp = self._request('POST', self._function_url(function_arn), _to_bytes(input_bytes), headers)
        return resp.headers.get(HEADER_INVOCATION_ID)

    def get_work(self, function_arn):
        """Blocks until the core hands this function a work item (spec C)."""
        resp = self._request('GET', self._work_url(function_arn))
        return WorkItem(invocation_id=resp.headers.get(HEADER_INVOCATION_ID),
                        payload=resp.body,
                        client_context=resp.headers.get(HEADER_CLIENT_CONTEXT))

    def post_work_result(self, function_arn, work_item):
        """Returns a handler's result (spec D)."""
        headers = {HEADER_INVOCATION_ID: work_item.invocation_id}
        self._request('POST', self._work_url(function_arn), _to_bytes(work_item.payload), headers)

    def post_handler_err(self, function_arn, invocation_id, handler_err):
        """Reports a handler failure (spec E). A string becomes
        {"errorMessage": ...}; a dict is sent as the error document itself."""
        if isinstance(handler_err, dict):
            doc = handler_err
        else:
            doc = {'errorMessage': str(handler_err)}
        headers = {HEADER_INVOCATION_ID: invocation_id, HEADER_FUNCTION_ERROR: 'Handled'}
        self._request('POST', self._work_url(function_arn), json.dumps(doc).encode('utf-8'), headers)

    def get_work_result(self, function_arn, invocation_id):
        """Blocks until the invoked function answered (spec B)."""
        if function_arn == GGROUTER_ARN or function_arn == ROUTER_FUNCTION_ARN:
            return GetWorkResultOutput(payload=b'', func_err='')
        headers = {HEADER_INVOCATION_ID: invocation_id}
        resp = self._request('GET', self._function_url(function_arn), None, headers)
        return GetWorkResultOutput(payload=resp.body, func_err=resp.headers.get(HEADER_FUNCTION_ERROR))

    def put_initialization_result(self, function_arn, err=None):
        """Tells the core whether the handler loaded (spec F)."""
        doc = {'Success': err is None, 'Response': '' if err is None else render_exception(err)}
        url = '{}/{}/initialized'.format(self._functions_base(), function_arn)
        self._request('PUT', url, json.dumps(doc).encode('utf-8'))

    def _functions_base(self):
        return 'http://{}:{}/{}/functions'.format(self.endpoint, self.port, API_VERSION)

    def _function_url(self, function_arn):
        return '{}/{}'.format(self._functions_base(), function_arn)

    def _work_url(self, function_arn):
        return '{}/{}/work'.format(self._functions_base(), function_arn)

    def _request(self, method, url, data=None, headers=None):
        hdrs = {HEADER_AUTHORIZATION: self.auth_token or ''}
        hdrs.update(headers or {})
        path = url.split('/', 3)[3] if url.count('/') >= 3 else ''
        try:
            # No timeout: get_work and get_work_result are long polls the
            # core may hold for as long as it likes.
            resp = ipc_http.request(self.endpoint, self.port, method, '/' + path, data, hdrs)
            return _Response(resp.headers, resp.body)
        except ipc_http.HTTPStatusError as e:
            detail = e.body.decode('utf-8', 'replace')
            raise IPCException('{} {} failed: HTTP {} {}'.format(method, url, e.code, detail).strip()) from e
        except (OSError, ValueError) as e:
            raise IPCException('{} {} failed: {}'.format(method, url, e)) from e


class _Response:
    def __init__(self, headers, body):
        self.headers = headers
        self.body = body
