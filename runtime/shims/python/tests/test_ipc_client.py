import json
import os
import socket
import unittest
from unittest import mock

import support
from fakeipc import FakeIPC
from greengrass_ipc_python_sdk.ipc_client import IPCClient, IPCException

ARN = 'arn:aws:lambda:us-east-1:123456789012:function:Target:$LATEST'
FUNCS = '/2016-11-01/functions/'


class IPCClientWireTest(unittest.TestCase):
    def setUp(self):
        self.fake = FakeIPC(support.TOKEN)
        self.addCleanup(self.fake.close)
        env = mock.patch.dict(os.environ, {'GG_DAEMON_PORT': str(self.fake.port),
                                           'AWS_CONTAINER_AUTHORIZATION_TOKEN': support.TOKEN})
        env.start()
        self.addCleanup(env.stop)
        self.client = IPCClient(endpoint='127.0.0.1')

    def only(self, method, path):
        found = self.fake.matching(method, path)
        self.assertEqual(len(found), 1, [(r.method, r.path) for r in self.fake.requests])
        return found[0]

    def test_port_comes_from_gg_daemon_port_else_8000(self):
        self.assertEqual(self.client.port, self.fake.port)
        with mock.patch.dict(os.environ):
            os.environ.pop('GG_DAEMON_PORT')
            self.assertEqual(IPCClient().port, 8000)
            self.assertEqual(IPCClient().endpoint, 'localhost')
        self.assertEqual(IPCClient(port=9001).port, 9001)

    def test_post_work(self):
        invocation_id = self.client.post_work(ARN, b'{"x": 1}', 'eyJjdXN0b20iOnt9fQ==', 'Event')
        self.assertEqual(invocation_id, 'inv-1')
        r = self.only('POST', FUNCS + ARN)
        self.assertEqual(r.headers['authorization'], support.TOKEN)
        self.assertEqual(r.headers['x-amz-client-context'], 'eyJjdXN0b20iOnt9fQ==')
        self.assertEqual(r.headers['x-amz-invocation-type'], 'Event')
        self.assertEqual(r.headers['content-type'], 'application/x-www-form-urlencoded')
        self.assertEqual(r.body, b'{"x": 1}')

    def test_post_work_defaults_and_text_payload(self):
        self.client.post_work(ARN, 'h\u00e9llo', None)
        self.client.post_work(ARN, None, b'')
        first, second = self.fake.matching('POST', FUNCS + ARN)
        self.assertEqual(first.headers['x-amz-invocation-type'], 'RequestResponse')
        self.assertEqual(first.headers['x-amz-client-context'], '')
        self.assertEqual(first.body, 'h\u00e9llo'.encode('utf-8'))
        self.assertEqual(second.body, b'')
        self.assertEqual(second.headers['content-length'], '0')

    def test_get_work(self):
        self.fake.enqueue_work('id-9', b'payload', 'Y3R4')
        item = self.client.get_work(ARN)
        self.assertEqual((item.invocation_id, item.payload, item.client_context), ('id-9', b'payload', 'Y3R4'))
        r = self.only('GET', FUNCS + ARN + '/work')
        self.assertEqual(r.headers['authorization'], support.TOKEN)
        self.assertEqual(r.body, b'')

    def test_post_work_result(self):
        from greengrass_ipc_python_sdk.ipc_client import WorkItem
        self.client.post_work_result(ARN, WorkItem('id-3', b'result', None))
        r = self.only('POST', FUNCS + ARN + '/work')
        self.assertEqual(r.headers['x-amz-invocationid'], 'id-3')
        self.assertNotIn('x-amz-function-error', r.headers)
        self.assertEqual(r.body, b'result')

    def test_post_handler_err(self):
        self.client.post_handler_err(ARN, 'id-4', 'it broke')
        self.client.post_handler_err(ARN, 'id-5', {'errorMessage': 'm', 'errorType': 'T', 'stackTrace': []})
        first, second = self.fake.matching('POST', FUNCS + ARN + '/work')
        self.assertEqual(first.headers['x-amz-function-error'], 'Handled')
        self.assertEqual(first.headers['x-amz-invocationid'], 'id-4')
        self.assertEqual(json.loads(first.body), {'errorMessage': 'it broke'})
        self.assertEqual(json.loads(second.body), {'errorMessage': 'm', 'errorType': 'T', 'stackTrace': []})

    def test_get_work_result(self):
        self.fake.answer('id-6', b'{"ok": true}')
        self.fake.answer('id-7', b'{"errorMessage": "x"}', 'Handled')
        ok = self.client.get_work_result(ARN, 'id-6')
        failed = self.client.get_work_result(ARN, 'id-7')
        self.assertEqual((ok.payload, ok.func_err), (b'{"ok": true}', ''))
        self.assertEqual((failed.payload, failed.func_err), (b'{"errorMessage": "x"}', 'Handled'))
        first = self.fake.matching('GET', FUNCS + ARN)[0]
        self.assertEqual(first.headers['x-amz-invocationid'], 'id-6')
        self.assertEqual(first.headers['authorization'], support.TOKEN)

    def test_get_work_result_from_router_makes_no_request(self):
        out = self.client.get_work_result('arn:aws:lambda:::function:GGRouter', 'id-8')
        self.assertEqual((out.payload, out.func_err), (b'', ''))
        self.assertEqual(self.fake.requests, [])

    def test_put_initialization_result(self):
        self.client.put_initialization_result(ARN, None)
        self.client.put_initialization_result(ARN, ImportError('No module named x'))
        ok, failed = self.fake.matching('PUT', FUNCS + ARN + '/initialized')
        self.assertEqual(json.loads(ok.body), {'Success': True, 'Response': ''})
        self.assertEqual(json.loads(failed.body), {'Success': False, 'Response': 'ImportError("No module named x")'})
        self.assertEqual(ok.headers['authorization'], support.TOKEN)

    def test_system_arn_path_is_unescaped(self):
        self.client.post_work('arn:aws:lambda:::function:GGSecretManager:1', b'', '')
        self.only('POST', FUNCS + 'arn:aws:lambda:::function:GGSecretManager:1')

    def test_http_error_is_ipc_exception(self):
        bad = IPCClient(endpoint='127.0.0.1')
        bad.auth_token = 'wrong'
        with self.assertRaises(IPCException) as cm:
            bad.post_work(ARN, b'', '')
        self.assertIn('403', str(cm.exception))

    def test_connection_refused_is_ipc_exception(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(IPCException):
            IPCClient(endpoint='127.0.0.1', port=port).get_work(ARN)


if __name__ == '__main__':
    unittest.main()
