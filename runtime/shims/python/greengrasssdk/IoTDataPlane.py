"""Publishing through the core's router and the local shadow service (spec 1.8).

Both are invocations of pseudo-functions; what to do rides in the client
context: the router reads custom.subject/source/queueFullPolicy, the shadow
service reads custom.subject (the shadow topic of the operation).
"""
import base64
import json
import logging

from greengrass_common import env_vars
from greengrasssdk import Lambda

customer_logger = logging.getLogger(__name__)
customer_logger.propagate = True

# The Python API spells the all-or-nothing policy AllOrException; on the wire
# it is AllOrError like every other SDK.
_QUEUE_FULL_POLICIES = {
    '': '',
    'BestEffort': 'BestEffort',
    'AllOrException': 'AllOrError',
    'AllOrError': 'AllOrError',
}


class ShadowError(Exception):
    pass


def _encode_client_context(doc):
    return base64.b64encode(json.dumps(doc).encode('utf-8')).decode('ascii')


class Client:
    def __init__(self):
        self.lambda_client = Lambda.Client()

    def get_thing_shadow(self, **kwargs):
        """thingName (required). Returns {'payload': bytes}."""
        return self._shadow_op('get', _thing_name(kwargs), b'')

    def update_thing_shadow(self, **kwargs):
        """thingName, payload (required). Returns {'payload': bytes}."""
        thing_name = _thing_name(kwargs)
        if 'payload' not in kwargs:
            raise ValueError('Parameter "payload" is required')
        return self._shadow_op('update', thing_name, kwargs['payload'])

    def delete_thing_shadow(self, **kwargs):
        """thingName (required). Returns {'payload': bytes}."""
        return self._shadow_op('delete', _thing_name(kwargs), b'')

    def publish(self, **kwargs):
        """topic (required), payload, queueFullPolicy ('BestEffort' or
        'AllOrException'). Returns None."""
        topic = kwargs.get('topic')
        if not topic:
            raise ValueError('Parameter "topic" is required')
        policy = kwargs.get('queueFullPolicy', '')
        if policy is None:
            policy = ''
        if policy not in _QUEUE_FULL_POLICIES:
            raise ValueError('queueFullPolicy must be "BestEffort" or "AllOrException", got {!r}'.format(policy))
        client_context = {
            'custom': {
                'source': env_vars.MY_FUNCTION_ARN,
                'subject': topic,
                'queueFullPolicy': _QUEUE_FULL_POLICIES[policy],
            }
        }
        customer_logger.debug('Publishing message on topic "%s"', topic)
        self.lambda_client.invoke(
            FunctionName=env_vars.ROUTER_FUNCTION_ARN,
            InvocationType='Event',
            ClientContext=_encode_client_context(client_context),
            Payload=kwargs.get('payload', b''))

    def _shadow_op(self, op, thing_name, payload):
        topic = '$aws/things/{}/shadow/{}'.format(thing_name, op)
        response = self.lambda_client.invoke(
            FunctionName=env_vars.SHADOW_FUNCTION_ARN,
            InvocationType='RequestResponse',
            ClientContext=_encode_client_context({'custom': {'subject': topic}}),
            Payload=payload)
        body = response['Payload']
        if response.get('FunctionError') != '':
            raise ShadowError('Request for shadow state returned function error {!r}: {}'.format(
                response.get('FunctionError'), _text(body)))
        data = body.read()
        try:
            doc = json.loads(data.decode('utf-8')) if data else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and 'code' in doc and 'message' in doc:
            raise ShadowError('Request for shadow state returned error code {} with message "{}"'.format(
                doc['code'], doc['message']))
        return {'payload': data}


def _thing_name(kwargs):
    name = kwargs.get('thingName')
    if not name:
        raise ValueError('Parameter "thingName" is required')
    return name


def _text(body):
    data = body.read() if hasattr(body, 'read') else body
    if isinstance(data, bytes):
        return data.decode('utf-8', 'replace')
    return str(data)
