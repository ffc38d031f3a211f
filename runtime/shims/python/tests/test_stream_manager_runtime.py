"""greengrasssdk.stream_manager as deployed functions see it: lambda_runtime.py
run as the core runs it (PYTHONPATH=<shims>, cwd = the function's code),
with and without a greengrasssdk bundled in the function."""
import ast
import json
import os
import sys
import unittest

import support
import test_lambda_runtime
from test_stream_manager_client import FakeStreamManager

PACKAGE = os.path.join(support.SHIM_DIR, 'greengrasssdk', 'stream_manager')

HANDLER = '''
import greengrasssdk
import greengrasssdk.stream_manager as sm


def where(event, context):
    return {'sdk': greengrasssdk.__file__, 'stream_manager': sm.__file__,
            'bundled': getattr(sm, 'BUNDLED', False)}


def append(event, context):
    from greengrasssdk.stream_manager import MessageStreamDefinition, StrategyOnFull, StreamManagerClient
    with StreamManagerClient() as client:
        client.create_message_stream(MessageStreamDefinition(
            name=event['stream'], strategy_on_full=StrategyOnFull.OverwriteOldestData))
        return client.append_message(event['stream'], event['data'].encode())
'''


class DeployedFunctionTest(test_lambda_runtime.RuntimeTestCase):
    def setUp(self):
        super().setUp()
        with open(os.path.join(self.code_dir, 'smfn.py'), 'w') as f:
            f.write(HANDLER)

    def start(self, handler, **env):
        # The runtime's environment for every worker (runtime/functions.go).
        env.setdefault('PYTHONPATH', support.SHIM_DIR)
        return super().start(handler, **env)

    def bundle(self, files):
        for rel, text in files.items():
            path = os.path.join(self.code_dir, *rel.split('/'))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)

    def test_a_function_without_an_sdk_gets_the_cores(self):
        self.start('smfn.where')
        self.assertEqual(self.initialized(), [{'Success': True, 'Response': ''}])
        got = json.loads(self.invoke('id-1').body)
        self.assertEqual(got['stream_manager'], os.path.join(PACKAGE, '__init__.py'))
        self.assertFalse(got['bundled'])

    def test_a_bundled_sdk_with_stream_manager_wins(self):
        self.bundle({'greengrasssdk/__init__.py': "INTERFACE_VERSION = '1.5'\n",
                     'greengrasssdk/stream_manager/__init__.py': 'BUNDLED = True\n'})
        self.start('smfn.where')
        self.assertEqual(self.initialized(), [{'Success': True, 'Response': ''}])
        got = json.loads(self.invoke('id-1').body)
        self.assertEqual(got['sdk'], os.path.join(self.code_dir, 'greengrasssdk', '__init__.py'))
        self.assertEqual(got['stream_manager'], os.path.join(self.code_dir, 'greengrasssdk', 'stream_manager',
                                                             '__init__.py'))
        self.assertTrue(got['bundled'])

    def test_a_bundled_sdk_without_stream_manager_hides_the_cores(self):
        # As on a v1 core: the bundled package is the whole greengrasssdk.
        self.bundle({'greengrasssdk/__init__.py': "INTERFACE_VERSION = '1.4'\n"})
        status, out, _ = self.run_to_exit('smfn.where')
        self.assertNotEqual(status, 0)
        self.assertIn("No module named 'greengrasssdk.stream_manager'", out)
        self.assertEqual(self.initialized()[0]['Success'], False)

    def test_a_function_talks_to_the_stream_manager_with_its_token(self):
        fake = FakeStreamManager(handle=lambda conn, request: conn.reply(request, {'status': 0, 'sequenceNumber': 0}))
        self.addCleanup(fake.close)
        self.start('smfn.append', STREAM_MANAGER_SERVER_PORT=str(fake.port))
        r = self.invoke('id-1', json.dumps({'stream': 'readings', 'data': '21.5'}).encode())
        self.assertNotIn('x-amz-function-error', r.headers, r.body)
        self.assertEqual(json.loads(r.body), 0)
        self.assertEqual(fake.connects[0]['authToken'], support.TOKEN)
        self.assertEqual([(op, body['name'] if op == 4 else body['definition']['name'])
                          for op, body in fake.wait_requests(2)], [(2, 'readings'), (4, 'readings')])
        self.assertEqual(fake.requests[1][1]['payload'], b'21.5')


class SourceTest(unittest.TestCase):
    def test_package_parses_as_python_3_7(self):
        # v1's SDK supported Python 3.7; so does this package.
        if sys.version_info < (3, 8):
            self.skipTest('ast feature_version needs Python 3.8')
        for root, _, files in os.walk(PACKAGE):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(root, name)
                    with open(path, encoding='utf-8') as f:
                        ast.parse(f.read(), path, feature_version=(3, 7))


if __name__ == '__main__':
    unittest.main()
