"""Local Lambda invocation: one post_work to the core, then, for
RequestResponse, a get_work_result that waits for the answer (spec 1.8)."""
import io
import logging
import re

from greengrass_common.function_arn_fields import FunctionArnFields
from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException  # noqa: F401 (re-exported)

customer_logger = logging.getLogger(__name__)
customer_logger.propagate = True

valid_base64_regex = '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$'
_INVOCATION_TYPES = ('RequestResponse', 'Event')


class InvocationException(Exception):
    pass


class StreamingBody:
    """The successful answer's payload, read like botocore's StreamingBody."""

    def __init__(self, payload):
        self._raw = io.BytesIO(payload or b'')

    def read(self, amt=None):
        return self._raw.read() if amt is None else self._raw.read(amt)

    def __iter__(self):
        return iter(lambda: self.read(4096), b'')

    def close(self):
        self._raw.close()


def _payload_bytes(payload):
    if payload is None:
        return b''
    if isinstance(payload, str):
        return payload.encode('utf-8')
    if hasattr(payload, 'read'):
        data = payload.read()
        return data.encode('utf-8') if isinstance(data, str) else bytes(data)
    return bytes(payload)


class Client:
    def __init__(self, endpoint='localhost', port=None):
        # port is deprecated in the v1 API: the IPC client reads GG_DAEMON_PORT.
        self.ipc = IPCClient(endpoint=endpoint)

    def invoke(self, **kwargs):
        """Invokes a local Lambda function.

        FunctionName (required, qualified or unqualified ARN), Qualifier,
        InvocationType ('RequestResponse' default, or 'Event'),
        ClientContext (base64 str/bytes) and Payload (bytes, str or
        file-like). Returns {'Payload': StreamingBody or bytes,
        'FunctionError': str or None}.
        """
        function_name = kwargs.get('FunctionName')
        if not function_name:
            raise ValueError('Parameter "FunctionName" is required')
        invocation_type = kwargs.get('InvocationType', 'RequestResponse')
        if invocation_type not in _INVOCATION_TYPES:
            raise ValueError('InvocationType must be one of {}, got {!r}'.format(
                ', '.join(_INVOCATION_TYPES), invocation_type))

        client_context = kwargs.get('ClientContext')
        if isinstance(client_context, (bytes, bytearray)):
            client_context = bytes(client_context).decode('ascii', 'replace')
        if client_context and not re.match(valid_base64_regex, client_context):
            raise ValueError('ClientContext must be a valid Base64-encoded JSON object')

        fields = FunctionArnFields(function_name)
        qualifier = kwargs.get('Qualifier')
        if qualifier and fields.qualifier and qualifier != fields.qualifier:
            raise ValueError('The derived qualifier from the function name does not match the specified qualifier.')
        target = FunctionArnFields.build_function_arn(fields.unqualified_arn, fields.qualifier or qualifier)

        payload = _payload_bytes(kwargs.get('Payload'))
        customer_logger.debug('Invoking local lambda %s with %s invocation type', target, invocation_type)
        invocation_id = self.ipc.post_work(target, payload, client_context or '', invocation_type)

        if invocation_type == 'Event':
            return {'Payload': b'', 'FunctionError': ''}

        result = self.ipc.get_work_result(target, invocation_id)
        if result.func_err:
            return {'Payload': result.payload, 'FunctionError': result.func_err}
        return {'Payload': StreamingBody(result.payload), 'FunctionError': result.func_err}
