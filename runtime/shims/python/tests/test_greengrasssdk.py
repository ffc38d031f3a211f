import base64
import io
import json
import os
import unittest
from datetime import datetime
from unittest import mock

import support
from fakeipc import FakeIPC
import greengrasssdk
from greengrass_common import env_vars
from greengrass_ipc_python_sdk.ipc_client import IPCException
from greengrasssdk.IoTDataPlane import ShadowError
from greengrasssdk.Lambda import StreamingBody
from greengrasssdk.SecretsManager import SecretsManagerError

FUNCS = '/2016-11-01/functions/'
ROUTER = 'arn:aws:lambda:::function:GGRouter'
SHADOW = 'arn:aws:lambda:::function:GGShadowService'
SECRETS = 'arn:aws:lambda:::function:GGSecretManager:1'
TARGET = 'arn:aws:lambda:us-east-1:123456789012:function:Other'


def decode_context(header):
    return json.loads(base64.b64decode(header).decode('utf-8'))


class SDKTestCase(unittest.TestCase):
    def setUp(self):
        self.fake = FakeIPC(support.TOKEN)
        self.addCleanup(self.fake.close)
        for patcher in (
                mock.patch.dict(os.environ, {'GG_DAEMON_PORT': str(self.fake.port),
                                             'AWS_CONTAINER_AUTHORIZATION_TOKEN': support.TOKEN}),
                mock.patch.object(env_vars, 'MY_FUNCTION_ARN', support.MY_ARN),
                mock.patch.object(env_vars, 'ROUTER_FUNCTION_ARN', ROUTER),
                mock.patch.object(env_vars, 'SHADOW_FUNCTION_ARN', SHADOW),
                mock.patch.object(env_vars, 'SECRETS_MANAGER_FUNCTION_ARN', SECRETS)):
            patcher.start()
            self.addCleanup(patcher.stop)

    def only(self, method, path):
        found = self.fake.matching(method, path)
        self.assertEqual(len(found), 1, [(r.method, r.path) for r in self.fake.requests])
        return found[0]


class ClientFactoryTest(unittest.TestCase):
    def test_known_and_unknown_types(self):
        from greengrasssdk import IoTDataPlane, Lambda, SecretsManager
        self.assertIsInstance(greengrasssdk.client('iot-data'), IoTDataPlane.Client)
        self.assertIsInstance(greengrasssdk.client('lambda'), Lambda.Client)
        self.assertIsInstance(greengrasssdk.client('secretsmanager'), SecretsManager.Client)
        with self.assertRaisesRegex(Exception, 'not recognized'):
            greengrasssdk.client('s3')
        self.assertEqual(greengrasssdk.INTERFACE_VERSION, '1.5')


class PublishTest(SDKTestCase):
    def test_publish_is_an_event_to_the_router(self):
        iot = greengrasssdk.client('iot-data')
        self.assertIsNone(iot.publish(topic='sensors/temp', payload=b'{"t": 21}'))
        r = self.only('POST', FUNCS + ROUTER)
        self.assertEqual(r.headers['x-amz-invocation-type'], 'Event')
        self.assertEqual(r.body, b'{"t": 21}')
        ctx = decode_context(r.headers['x-amz-client-context'])
        self.assertEqual(ctx, {'custom': {'source': support.MY_ARN, 'subject': 'sensors/temp',
                                          'queueFullPolicy': ''}})
        self.assertEqual(list(ctx['custom']), ['source', 'subject', 'queueFullPolicy'])
        # An Event is never waited for.
        self.assertEqual(self.fake.matching('GET', FUNCS + ROUTER), [])

    def test_queue_full_policy_mapping(self):
        iot = greengrasssdk.client('iot-data')
        iot.publish(topic='a', payload='x', queueFullPolicy='AllOrException')
        iot.publish(topic='b', payload='x', queueFullPolicy='BestEffort')
        sent = [decode_context(r.headers['x-amz-client-context'])['custom']['queueFullPolicy']
                for r in self.fake.matching('POST', FUNCS + ROUTER)]
        self.assertEqual(sent, ['AllOrError', 'BestEffort'])
        with self.assertRaises(ValueError):
            iot.publish(topic='c', payload='x', queueFullPolicy='Sometimes')

    def test_payload_forms(self):
        iot = greengrasssdk.client('iot-data')
        iot.publish(topic='t', payload='caf\u00e9')
        iot.publish(topic='t', payload=io.BytesIO(b'from a file'))
        iot.publish(topic='t')
        self.assertEqual([r.body for r in self.fake.matching('POST', FUNCS + ROUTER)],
                         ['caf\u00e9'.encode('utf-8'), b'from a file', b''])

    def test_topic_required(self):
        with self.assertRaises(ValueError):
            greengrasssdk.client('iot-data').publish(payload=b'x')


class ShadowTest(SDKTestCase):
    def test_get_update_delete_encodings(self):
        iot = greengrasssdk.client('iot-data')
        self.fake.answer('inv-1', b'{"state": {"reported": {"on": true}}}')
        got = iot.get_thing_shadow(thingName='Lamp')
        self.assertEqual(got, {'payload': b'{"state": {"reported": {"on": true}}}'})
        iot.update_thing_shadow(thingName='Lamp', payload=b'{"state": {"desired": {"on": false}}}')
        iot.delete_thing_shadow(thingName='Lamp')

        posts = self.fake.matching('POST', FUNCS + SHADOW)
        self.assertEqual([decode_context(r.headers['x-amz-client-context']) for r in posts], [
            {'custom': {'subject': '$aws/things/Lamp/shadow/get'}},
            {'custom': {'subject': '$aws/things/Lamp/shadow/update'}},
            {'custom': {'subject': '$aws/things/Lamp/shadow/delete'}},
        ])
        self.assertEqual([r.headers['x-amz-invocation-type'] for r in posts], ['RequestResponse'] * 3)
        self.assertEqual([r.body for r in posts], [b'', b'{"state": {"desired": {"on": false}}}', b''])
        gets = self.fake.matching('GET', FUNCS + SHADOW)
        self.assertEqual([r.headers['x-amz-invocationid'] for r in gets], ['inv-1', 'inv-2', 'inv-3'])

    def test_error_document_raises_shadow_error(self):
        self.fake.answer('inv-1', b'{"code": 404, "message": "No shadow exists with name: \'Lamp\'"}')
        with self.assertRaisesRegex(ShadowError, '404'):
            greengrasssdk.client('iot-data').get_thing_shadow(thingName='Lamp')

    def test_function_error_raises_shadow_error(self):
        self.fake.answer('inv-1', b'{"errorMessage": "timed out"}', 'Unhandled')
        with self.assertRaisesRegex(ShadowError, 'timed out'):
            greengrasssdk.client('iot-data').update_thing_shadow(thingName='Lamp', payload=b'{}')

    def test_missing_function_error_header_raises_shadow_error(self):
        # The v1 SDK compares the header with '' (spec 1.5), so a core that
        # omits it fails every shadow call.
        self.fake.answer('inv-1', b'{"state": {}}', None)
        with self.assertRaises(ShadowError):
            greengrasssdk.client('iot-data').get_thing_shadow(thingName='Lamp')

    def test_document_with_only_code_is_not_an_error(self):
        self.fake.answer('inv-1', b'{"code": 1, "state": {}}')
        out = greengrasssdk.client('iot-data').get_thing_shadow(thingName='Lamp')
        self.assertEqual(out['payload'], b'{"code": 1, "state": {}}')


class InvokeTest(SDKTestCase):
    def test_request_response(self):
        self.fake.answer('inv-1', b'{"answer": 42}')
        ctx = base64.b64encode(b'{"custom": {"k": "v"}}').decode('ascii')
        out = greengrasssdk.client('lambda').invoke(FunctionName=TARGET, Qualifier='3', ClientContext=ctx,
                                                    Payload=b'{"q": 1}')
        self.assertIsInstance(out['Payload'], StreamingBody)
        self.assertEqual(out['Payload'].read(), b'{"answer": 42}')
        self.assertEqual(out['FunctionError'], '')
        r = self.only('POST', FUNCS + TARGET + ':3')
        self.assertEqual(r.headers['x-amz-invocation-type'], 'RequestResponse')
        self.assertEqual(r.headers['x-amz-client-context'], ctx)
        self.assertEqual(r.body, b'{"q": 1}')
        self.assertEqual(self.only('GET', FUNCS + TARGET + ':3').headers['x-amz-invocationid'], 'inv-1')

    def test_function_error_returns_raw_payload(self):
        self.fake.answer('inv-1', b'{"errorMessage": "boom"}', 'Handled')
        out = greengrasssdk.client('lambda').invoke(FunctionName=TARGET + ':2')
        self.assertEqual(out, {'Payload': b'{"errorMessage": "boom"}', 'FunctionError': 'Handled'})

    def test_event_does_not_wait(self):
        out = greengrasssdk.client('lambda').invoke(FunctionName=TARGET, InvocationType='Event',
                                                    ClientContext=b'e30=')
        self.assertEqual(out, {'Payload': b'', 'FunctionError': ''})
        self.assertEqual(self.only('POST', FUNCS + TARGET).headers['x-amz-client-context'], 'e30=')
        self.assertEqual(self.fake.matching('GET', FUNCS + TARGET), [])

    def test_argument_checks(self):
        lam = greengrasssdk.client('lambda')
        for kwargs in ({}, {'FunctionName': 'not-an-arn'},
                       {'FunctionName': TARGET + ':1', 'Qualifier': '2'},
                       {'FunctionName': TARGET, 'InvocationType': 'DryRun'},
                       {'FunctionName': TARGET, 'ClientContext': 'not base64!'}):
            with self.assertRaises(ValueError, msg=kwargs):
                lam.invoke(**kwargs)
        self.assertEqual(self.fake.requests, [])

    def test_core_refusal_is_ipc_exception(self):
        with mock.patch.dict(os.environ, {'AWS_CONTAINER_AUTHORIZATION_TOKEN': 'stolen'}):
            lam = greengrasssdk.client('lambda')
        with self.assertRaises(IPCException):
            lam.invoke(FunctionName=TARGET)


class SecretsTest(SDKTestCase):
    def test_get_secret_value(self):
        self.fake.answer('inv-1', json.dumps({
            'ARN': 'arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf', 'Name': 'db',
            'VersionId': 'v1', 'SecretString': 'hunter2', 'VersionStages': ['AWSCURRENT'],
            'CreatedDate': 1700000000123}).encode('utf-8'))
        out = greengrasssdk.client('secretsmanager').get_secret_value(SecretId='db', VersionStage='AWSCURRENT')
        self.assertEqual(out['SecretString'], 'hunter2')
        self.assertEqual(out['CreatedDate'], datetime.fromtimestamp(1700000000.123))
        r = self.only('POST', FUNCS + SECRETS)
        self.assertEqual(json.loads(r.body), {'SecretId': 'db', 'VersionStage': 'AWSCURRENT'})
        self.assertEqual(r.headers['x-amz-client-context'], '')
        self.assertEqual(r.headers['x-amz-invocation-type'], 'RequestResponse')

    def test_stage_is_optional(self):
        self.fake.answer('inv-1', b'{"ARN": "a", "Name": "db", "VersionId": "v", "CreatedDate": 0}')
        greengrasssdk.client('secretsmanager').get_secret_value(SecretId='db')
        self.assertEqual(json.loads(self.only('POST', FUNCS + SECRETS).body), {'SecretId': 'db'})

    def test_error_body_raises(self):
        self.fake.answer('inv-1', b'{"Status": 404, "Message": "secret db not found"}')
        with self.assertRaisesRegex(SecretsManagerError, 'secret db not found'):
            greengrasssdk.client('secretsmanager').get_secret_value(SecretId='db')

    def test_version_id_is_refused(self):
        with self.assertRaisesRegex(ValueError, 'VersionId'):
            greengrasssdk.client('secretsmanager').get_secret_value(SecretId='db', VersionId='v1')


if __name__ == '__main__':
    unittest.main()
