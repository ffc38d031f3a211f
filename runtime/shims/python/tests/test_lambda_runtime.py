"""lambda_runtime.py end to end, as a subprocess against the fake core."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

import support
from fakeipc import FakeIPC

RUNTIME = os.path.join(support.SHIM_DIR, 'lambda_runtime.py')
ARN = 'arn:aws:lambda:us-east-1:123456789012:function:TestFn:7'
FUNCS = '/2016-11-01/functions/'
WORK = FUNCS + ARN + '/work'
INITIALIZED = FUNCS + ARN + '/initialized'
USER_LOG_GROUP = '/Lambda/us-east-1/123456789012/TestFn'

HANDLERS = '''
import json
import logging

import greengrasssdk

iot = greengrasssdk.client('iot-data')


def echo(event, context):
    return {
        'event': event,
        'function_name': context.function_name,
        'function_version': context.function_version,
        'invoked_function_arn': context.invoked_function_arn,
        'aws_request_id': context.aws_request_id,
        'custom': context.client_context.custom,
        'client': context.client_context.client,
        'identity': context.identity,
        'memory_limit_in_mb': context.memory_limit_in_mb,
        'remaining': context.get_remaining_time_in_millis(),
    }


def nothing(event, context):
    return None


def binary(event, context):
    return b'got:' + event + b'\\xff'


def text(event, context):
    return 'caf\\u00e9'


def fail(event, context):
    raise ValueError('the sensor is on fire')


def unserializable(event, context):
    return object()


def log(event, context):
    logging.warning('warned %s', event['n'])
    logging.getLogger('user.module').critical('very bad')
    logging.info('fyi')
    logging.debug('not shown')
    print('printed')
    return 'logged'


def publish(event, context):
    iot.publish(topic='out/' + context.client_context.custom['subject'], payload=json.dumps(event))
    return 'published'
'''


class RuntimeTestCase(unittest.TestCase):
    def setUp(self):
        self.fake = FakeIPC(support.TOKEN)
        self.addCleanup(self.fake.close)
        self.code_dir = tempfile.mkdtemp(prefix='gg-fn-')
        self.addCleanup(shutil.rmtree, self.code_dir)
        with open(os.path.join(self.code_dir, 'handlers.py'), 'w') as f:
            f.write(HANDLERS)
        self.proc = None

    def env(self, **overrides):
        env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'PYTHONDONTWRITEBYTECODE': '1',
            'MY_FUNCTION_ARN': ARN,
            'AWS_CONTAINER_AUTHORIZATION_TOKEN': support.TOKEN,
            'ENCODING_TYPE': 'json',
            'GGC_MAX_INTERFACE_VERSION': '1.5',
            'GG_DAEMON_PORT': str(self.fake.port),
            'ROUTER_FUNCTION_ARN': 'arn:aws:lambda:::function:GGRouter',
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def start(self, handler, **env):
        self.proc = subprocess.Popen([sys.executable, RUNTIME, '--handler=' + handler], cwd=self.code_dir,
                                     env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(self._reap)
        return self.proc

    def _reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def run_to_exit(self, handler, **env):
        proc = self.start(handler, **env)
        out, err = proc.communicate(timeout=20)
        return proc.returncode, out.decode('utf-8'), err.decode('utf-8')

    def stop(self):
        """SIGTERM once the runtime waits for work; returns (status, stdout)."""
        self.fake.wait_until(lambda reqs: sum(1 for r in reqs if r.method == 'GET' and r.path == WORK) >=
                             len([r for r in reqs if r.method == 'POST' and r.path == WORK]) + 1)
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out.decode('utf-8'), err.decode('utf-8')

    def invoke(self, invocation_id, payload=b'', client_context=''):
        self.fake.enqueue_work(invocation_id, payload, client_context)
        for r in self.fake.wait_for('POST', WORK, count=1 + self._posted()):
            if r.headers.get('x-amz-invocationid') == invocation_id:
                return r
        self.fail('no result posted for ' + invocation_id)

    def _posted(self):
        return len(self.fake.matching('POST', WORK))

    def initialized(self):
        return [json.loads(r.body) for r in self.fake.wait_for('PUT', INITIALIZED)]


class StartupTest(RuntimeTestCase):
    def test_missing_module_is_fatal_and_reported(self):
        status, out, _ = self.run_to_exit('nosuch.handler')
        self.assertNotEqual(status, 0)
        line = '[FATAL]-lambda_runtime.py:{},Failed to import handler function "nosuch.handler" ' \
               'due to exception: No module named \'nosuch\''
        self.assertRegex(out, '(?m)^' + re.escape(line).replace(re.escape('{}'), r'\d+') + '$')
        self.assertEqual(self.initialized(), [{'Success': False,
                                               'Response': 'ModuleNotFoundError("No module named \'nosuch\'")'}])
        fatal = [e for e in self.fake.log_events() if e[2].startswith('[FATAL]')]
        self.assertEqual(len(fatal), 1)
        self.assertEqual(fatal[0][:2], (USER_LOG_GROUP, 'fromPythonAppender'))
        self.assertIn('Failed to import handler function "nosuch.handler"', fatal[0][2])
        self.assertEqual(self.fake.matching('GET', WORK), [])

    def test_missing_function_is_fatal(self):
        status, out, _ = self.run_to_exit('handlers.nope')
        self.assertNotEqual(status, 0)
        self.assertIn('Failed to import handler function "handlers.nope" due to exception: '
                      'module \'handlers\' has no attribute \'nope\'', out)
        self.assertEqual(self.initialized()[0]['Success'], False)
        self.assertTrue(self.initialized()[0]['Response'].startswith('AttributeError("'))

    def test_syntax_error_in_handler_module_is_fatal(self):
        with open(os.path.join(self.code_dir, 'broken.py'), 'w') as f:
            f.write('def handler(event, context)\n    return 1\n')
        status, out, _ = self.run_to_exit('broken.handler')
        self.assertNotEqual(status, 0)
        self.assertTrue(self.initialized()[0]['Response'].startswith('SyntaxError("'))

    def test_bad_environment_is_fatal(self):
        status, out, _ = self.run_to_exit('handlers.echo', ENCODING_TYPE='xml')
        self.assertNotEqual(status, 0)
        self.assertRegex(out, r'\[FATAL\]-lambda_runtime\.py:\d+,Cannot start the runtime: ENCODING_TYPE must be')
        self.assertEqual(self.initialized()[0]['Success'], False)

    def test_missing_identity_is_fatal(self):
        status, out, _ = self.run_to_exit('handlers.echo', MY_FUNCTION_ARN=None)
        self.assertNotEqual(status, 0)
        self.assertIn('MY_FUNCTION_ARN is not set', out)

    def test_newer_sdk_interface_than_core_is_refused(self):
        status, out, _ = self.run_to_exit('handlers.echo', GGC_MAX_INTERFACE_VERSION='1.4')
        self.assertNotEqual(status, 0)
        self.assertIn('interface version 1.5 is not supported', out)

    def test_user_bundled_sdk_wins(self):
        os.mkdir(os.path.join(self.code_dir, 'greengrasssdk'))
        with open(os.path.join(self.code_dir, 'greengrasssdk', '__init__.py'), 'w') as f:
            f.write("INTERFACE_VERSION = '1.3'\nBUNDLED = True\ndef client(kind):\n    return None\n")
        with open(os.path.join(self.code_dir, 'which.py'), 'w') as f:
            f.write('import greengrasssdk\ndef handler(event, context):\n'
                    '    return getattr(greengrasssdk, "BUNDLED", False)\n')
        self.start('which.handler')
        self.assertEqual(self.initialized(), [{'Success': True, 'Response': ''}])
        self.assertEqual(self.invoke('id-1').body, b'true')


class InvocationTest(RuntimeTestCase):
    def test_json_event_context_and_result(self):
        self.start('handlers.echo', EVERGREEN_FUNCTION_TIMEOUT_MS='5000', EVERGREEN_FUNCTION_MEMORY_MB='128')
        self.assertEqual(self.initialized(), [{'Success': True, 'Response': ''}])
        ctx = base64.b64encode(json.dumps({'custom': {'subject': 'in/topic', 'source': 'cloud'},
                                           'client': {'app': 'x'}}).encode('utf-8')).decode('ascii')
        r = self.invoke('id-1', b'{"temp": 21}', ctx)
        self.assertNotIn('x-amz-function-error', r.headers)
        self.assertEqual(r.headers['authorization'], support.TOKEN)
        got = json.loads(r.body)
        remaining = got.pop('remaining')
        self.assertEqual(got, {
            'event': {'temp': 21},
            'function_name': 'TestFn',
            'function_version': '7',
            'invoked_function_arn': ARN,
            'aws_request_id': 'id-1',
            'custom': {'subject': 'in/topic', 'source': 'cloud'},
            'client': {'app': 'x'},
            'identity': None,
            'memory_limit_in_mb': 128,
        })
        self.assertTrue(3000 < remaining <= 5000, remaining)
        self.assertEqual(self.stop()[0], 0)

    def test_defaults_empty_payload_and_context(self):
        self.start('handlers.echo')
        got = json.loads(self.invoke('id-1').body)
        self.assertEqual(got['event'], {})
        self.assertEqual(got['custom'], {})
        self.assertIsNone(got['memory_limit_in_mb'])
        self.assertTrue(0 < got['remaining'] <= 3000, got['remaining'])

    def test_none_result_is_null(self):
        self.start('handlers.nothing')
        self.assertEqual(self.invoke('id-1', b'[1, 2]').body, b'null')

    def test_binary_encoding(self):
        self.start('handlers.binary', ENCODING_TYPE='binary')
        self.assertEqual(self.invoke('id-1', b'\x00\x01not json').body, b'got:\x00\x01not json\xff')

    def test_binary_text_result_is_utf8(self):
        self.start('handlers.text', ENCODING_TYPE='binary')
        self.assertEqual(self.invoke('id-1', b'').body, 'caf\u00e9'.encode('utf-8'))

    def test_handled_exception(self):
        self.start('handlers.fail')
        r = self.invoke('id-1', b'{}')
        self.assertEqual(r.headers['x-amz-function-error'], 'Handled')
        doc = json.loads(r.body)
        self.assertEqual(doc['errorMessage'], 'the sensor is on fire')
        self.assertEqual(doc['errorType'], 'ValueError')
        self.assertTrue(any('handlers.py' in frame and 'in fail' in frame for frame in doc['stackTrace']),
                        doc['stackTrace'])
        self.assertFalse(any('lambda_runtime.py' in frame for frame in doc['stackTrace']), doc['stackTrace'])
        # The worker survives its handler's failure.
        self.assertEqual(self.invoke('id-2', b'{}').headers['x-amz-function-error'], 'Handled')

    def test_unserializable_result_is_handled_error(self):
        self.start('handlers.unserializable')
        r = self.invoke('id-1', b'{}')
        self.assertEqual(r.headers['x-amz-function-error'], 'Handled')
        self.assertEqual(json.loads(r.body)['errorType'], 'TypeError')

    def test_malformed_json_event_is_handled_error(self):
        self.start('handlers.echo')
        r = self.invoke('id-1', b'{not json')
        self.assertEqual(r.headers['x-amz-function-error'], 'Handled')
        self.assertEqual(json.loads(r.body)['errorType'], 'JSONDecodeError')

    def test_sdk_inside_handler_publishes_as_this_function(self):
        self.start('handlers.publish')
        ctx = base64.b64encode(b'{"custom": {"subject": "in"}}').decode('ascii')
        self.assertEqual(self.invoke('id-1', b'{"v": 1}', ctx).body, b'"published"')
        pub = self.fake.matching('POST', FUNCS + 'arn:aws:lambda:::function:GGRouter')
        self.assertEqual(len(pub), 1)
        self.assertEqual(json.loads(base64.b64decode(pub[0].headers['x-amz-client-context'])),
                         {'custom': {'source': ARN, 'subject': 'out/in', 'queueFullPolicy': ''}})
        self.assertEqual(pub[0].body, b'{"v": 1}')

    def test_get_work_is_retried(self):
        self.fake.fail_work_gets = 3
        self.start('handlers.nothing')
        self.assertEqual(self.invoke('id-1').body, b'null')
        self.assertGreaterEqual(len(self.fake.matching('GET', WORK)), 4)


class LifecycleTest(RuntimeTestCase):
    def test_sigterm_while_waiting_exits_zero(self):
        self.start('handlers.nothing')
        self.initialized()
        status, out, err = self.stop()
        self.assertEqual(status, 0, err)
        self.assertIn('[INFO]-lambda_runtime.py:', out)
        self.assertIn('Caught SIGTERM. Stopping runtime.', out)

    def test_logging_reaches_stdout_and_sink(self):
        self.start('handlers.log')
        self.assertEqual(self.invoke('id-1', b'{"n": 3}').body, b'"logged"')
        status, out, _ = self.stop()
        self.assertEqual(status, 0)
        for expected in (r'\[WARN\]-handlers\.py:\d+,warned 3', r'\[FATAL\]-handlers\.py:\d+,very bad',
                         r'\[INFO\]-handlers\.py:\d+,fyi'):
            self.assertRegex(out, '(?m)^' + expected + '$')
        self.assertNotIn('not shown', out)
        self.assertIn('printed\n', out)

        user = [(m) for group, stream, m in self.fake.log_events()
                if group == USER_LOG_GROUP and stream == 'fromPythonAppender']
        self.assertTrue(any(re.fullmatch(r'\[WARN\]-handlers\.py:\d+,warned 3', m) for m in user), user)
        self.assertTrue(any(re.fullmatch(r'\[FATAL\]-handlers\.py:\d+,very bad', m) for m in user), user)
        self.assertTrue(any('Caught SIGTERM' in m for m in user), user)
        self.assertFalse(any('printed' in m for m in user), user)


if __name__ == '__main__':
    unittest.main()
