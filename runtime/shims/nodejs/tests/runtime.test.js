'use strict';

// lambda_nodejs_runtime.js end to end, as a subprocess against the fake core.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');

const { FakeIPC, API } = require('./fakeipc');
const { ARN, MODULES, RUNTIME, TOKEN } = require('./support');

const WORK = `${API}functions/${ARN}/work`;
const INITIALIZED = `${API}functions/${ARN}/initialized`;
const ROUTER = 'arn:aws:lambda:::function:GGRouter';

const HANDLERS = `
const GG = require('aws-greengrass-core-sdk');
const IPCClient = require('aws-greengrass-ipc-sdk-js');

exports.echo = (event, context, callback) => {
    callback(null, {
        event,
        invokedFunctionArn: context.invokedFunctionArn,
        awsRequestId: context.awsRequestId,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        clientContext: context.clientContext,
        callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
        oldStyle: [typeof context.succeed, typeof context.fail, typeof context.done],
        remaining: context.getRemainingTimeInMillis(),
        ipcClient: typeof IPCClient,
    });
};

exports.later = (event, context, callback) => {
    setTimeout(() => callback(null, 'later'), 20);
};

exports.asyncEcho = async (event) => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    return { got: event };
};

exports.nothing = async () => undefined;

exports.promiseOnly = () => Promise.resolve('from a promise');

exports.throws = () => {
    throw new RangeError('the sensor is on fire');
};

exports.callbackError = (event, context, callback) => callback(new TypeError('bad input'));

exports.rejects = async () => {
    throw new Error('rejected');
};

exports.callbackString = (event, context, callback) => callback('just a string');

exports.succeed = (event, context) => context.succeed({ old: 'style' });

exports.fail = (event, context) => context.fail(new Error('old failure'));

exports.done = (event, context) => context.done(null, 'done!');

exports.circular = (event, context, callback) => {
    const o = {};
    o.self = o;
    callback(null, o);
};

exports.twice = (event, context, callback) => {
    callback(null, 'first');
    callback(null, 'second');
};

exports.binary = (event, context, callback) => {
    callback(null, Buffer.concat([Buffer.from('got:'), event, Buffer.from([0xff])]));
};

exports.text = (event, context, callback) => callback(null, Buffer.isBuffer(event) ? 'caf\\u00e9' : 'not a buffer');

exports.publish = (event, context, callback) => {
    new GG.IotData().publish({ topic: 'out/' + context.clientContext.Custom.subject, payload: JSON.stringify(event) }, (err) => {
        callback(err, 'published');
    });
};

exports.notAFunction = 42;
`;

function b64(doc) {
    return Buffer.from(JSON.stringify(doc)).toString('base64');
}

// Starts the runtime in a fresh code directory against a fresh fake core.
async function startRuntime(t, { handler, files = {}, env = {}, encoding = 'json', nodePath = true }) {
    const fake = await new FakeIPC(TOKEN).listen();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gg-nodejs-'));
    for (const [name, text] of Object.entries({ 'index.js': HANDLERS, ...files })) {
        fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        fs.writeFileSync(path.join(dir, name), text);
    }
    const childEnv = {
        PATH: process.env.PATH,
        MY_FUNCTION_ARN: ARN,
        AWS_CONTAINER_AUTHORIZATION_TOKEN: TOKEN,
        ENCODING_TYPE: encoding,
        GGC_MAX_INTERFACE_VERSION: '1.5',
        GG_DAEMON_PORT: String(fake.port),
        ...(nodePath ? { NODE_PATH: MODULES } : {}),
        ...env,
    };
    for (const [k, v] of Object.entries(childEnv)) {
        if (v === undefined) {
            delete childEnv[k];
        }
    }
    const proc = spawn(process.execPath, [RUNTIME, `--handler=${handler}`], { cwd: dir, env: childEnv });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    t.after(async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGKILL');
            await exited;
        }
        await fake.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });
    const rt = {
        fake,
        proc,
        exited,
        output: () => `${stdout}${stderr}`,
        stdout: () => stdout,
        // Runs one work item and returns what the runtime posted for it.
        async invoke(id, payload = '', clientContext = '') {
            fake.enqueueWork(id, payload, clientContext);
            const [r] = await fake.waitUntil(() => {
                const found = fake.matching('POST', WORK).filter((x) => x.headers['x-amz-invocationid'] === id);
                return found.length ? found : null;
            }, 10000, `result of ${id}\n${stdout}${stderr}`);
            return { handled: r.headers['x-amz-function-error'], body: r.body, json: () => JSON.parse(r.body) };
        },
    };
    return rt;
}

async function initialized(rt) {
    const [r] = await rt.fake.waitFor('PUT', INITIALIZED);
    return JSON.parse(r.body);
}

describe('lambda_nodejs_runtime.js', () => {
    describe('start', () => {
        it('reports a missing module to the core and exits non-zero', async (t) => {
            const rt = await startRuntime(t, { handler: 'missing.handler' });
            const doc = await initialized(rt);
            assert.equal(doc.Success, false);
            assert.match(doc.Response, /^Error\("Cannot find module/);
            const { code } = await rt.exited;
            assert.notEqual(code, 0);
            assert.match(rt.stdout(), /\[FATAL\]-lambda_nodejs_runtime\.js:\d+,Failed to import handler function "missing\.handler" due to exception: Cannot find module/);
            assert.equal(rt.fake.matching('GET', WORK).length, 0, 'no work is asked for');
        });

        it('reports a module that throws while loading', async (t) => {
            const rt = await startRuntime(t, {
                handler: 'broken.handler',
                files: { 'broken.js': 'null.boom;\nexports.handler = () => {};\n' },
            });
            const doc = await initialized(rt);
            assert.equal(doc.Success, false);
            assert.match(doc.Response, /^TypeError\("Cannot read properties of null/);
            assert.notEqual((await rt.exited).code, 0);
        });

        it('reports an export that is not a function', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.notAFunction' });
            const doc = await initialized(rt);
            assert.equal(doc.Success, false);
            assert.match(doc.Response, /not a function/);
            assert.notEqual((await rt.exited).code, 0);
        });

        it('loads a module below the code directory: everything before the last dot', async (t) => {
            const rt = await startRuntime(t, {
                handler: 'lib/v1.2/main.handler',
                files: { 'lib/v1.2/main.js': 'exports.handler = (e, c, cb) => cb(null, "nested");\n' },
            });
            assert.deepEqual(await initialized(rt), { Success: true, Response: '' });
            assert.equal((await rt.invoke('n1')).json(), 'nested');
        });

        for (const [what, env, pattern] of [
            ['a missing ENCODING_TYPE', { ENCODING_TYPE: undefined }, /ENCODING_TYPE must be json or binary/],
            ['an unknown ENCODING_TYPE', { ENCODING_TYPE: 'xml' }, /ENCODING_TYPE must be json or binary, got "xml"/],
            ['a core of another major interface version', { GGC_MAX_INTERFACE_VERSION: '2.0' }, /interface version 1\.5 is not supported/],
            ['a core older than the SDK', { GGC_MAX_INTERFACE_VERSION: '1.4' }, /interface version 1\.5 is not supported/],
            ['a malformed GGC_MAX_INTERFACE_VERSION', { GGC_MAX_INTERFACE_VERSION: 'latest' }, /GGC_MAX_INTERFACE_VERSION must be major\.minor/],
            ['a malformed MY_FUNCTION_ARN', { MY_FUNCTION_ARN: 'TestFn' }, /Cannot parse given string as a function ARN/],
        ]) {
            it(`refuses to start with ${what}`, async (t) => {
                const rt = await startRuntime(t, { handler: 'index.echo', env });
                const { code } = await rt.exited;
                assert.notEqual(code, 0);
                assert.match(rt.stdout(), /\[FATAL\]-/);
                assert.match(rt.stdout(), pattern);
                assert.equal(rt.fake.matching('GET', WORK).length, 0);
            });
        }

        it('reports the refusal to the core when it can address it', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.echo', env: { ENCODING_TYPE: 'xml' } });
            const doc = await initialized(rt);
            assert.equal(doc.Success, false);
            assert.match(doc.Response, /ENCODING_TYPE/);
        });

        it('refuses a bundled SDK newer than the core', async (t) => {
            const rt = await startRuntime(t, {
                handler: 'app.handler',
                files: {
                    'app.js': "require('aws-greengrass-core-sdk');\nexports.handler = () => {};\n",
                    'node_modules/aws-greengrass-core-sdk/index.js': "exports.GreengrassInterfaceVersion = '1.9';\n",
                },
            });
            const doc = await initialized(rt);
            assert.equal(doc.Success, false);
            assert.match(doc.Response, /interface version 1\.9 is not supported/);
        });
    });

    describe('json functions', () => {
        it('hands event and context to a callback handler and posts its JSON result', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.echo' });
            assert.deepEqual(await initialized(rt), { Success: true, Response: '' });
            const cc = b64({ custom: { subject: 'sensors/temp', source: 'arn:aws:lambda:us-east-1:123456789012:function:Pub:1' }, client: { x: 1 } });
            const res = await rt.invoke('inv-a', '{"temp":21.5}', cc);
            assert.equal(res.handled, undefined);
            const out = res.json();
            assert.deepEqual(out.event, { temp: 21.5 });
            assert.equal(out.invokedFunctionArn, ARN);
            assert.equal(out.awsRequestId, 'inv-a');
            assert.equal(out.functionName, 'TestFn');
            assert.equal(out.functionVersion, '7');
            assert.deepEqual(out.clientContext, {
                client: {},
                Custom: { subject: 'sensors/temp', source: 'arn:aws:lambda:us-east-1:123456789012:function:Pub:1' },
                env: {},
            });
            assert.equal(out.callbackWaitsForEmptyEventLoop, true);
            assert.deepEqual(out.oldStyle, ['function', 'function', 'function']);
            assert.ok(out.remaining > 0 && out.remaining <= 3000);
            assert.equal(out.ipcClient, 'function', 'user code resolves aws-greengrass-ipc-sdk-js');
        });

        it('gives an empty payload as {} and a missing or unreadable client context as empty Custom', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.echo' });
            const first = (await rt.invoke('inv-1')).json();
            assert.deepEqual(first.event, {});
            assert.deepEqual(first.clientContext, { client: {}, Custom: {}, env: {} });
            const second = (await rt.invoke('inv-2', '[1,2]', '!!not base64 json!!')).json();
            assert.deepEqual(second.event, [1, 2]);
            assert.deepEqual(second.clientContext.Custom, {});
        });

        it('serves item after item, asking for work after each', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.later' });
            for (const id of ['s1', 's2', 's3']) {
                assert.equal((await rt.invoke(id)).json(), 'later');
            }
            await rt.fake.waitFor('GET', WORK, 4);
        });

        for (const [handler, want] of [
            ['asyncEcho', { got: { n: 1 } }],
            ['promiseOnly', 'from a promise'],
            ['nothing', null],
            ['succeed', { old: 'style' }],
            ['done', 'done!'],
        ]) {
            it(`posts the result of ${handler}`, async (t) => {
                const rt = await startRuntime(t, { handler: `index.${handler}` });
                const res = await rt.invoke('r1', '{"n":1}');
                assert.equal(res.handled, undefined);
                assert.deepEqual(res.json(), want);
            });
        }

        it('takes the first of two callbacks and goes on serving', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.twice' });
            assert.equal((await rt.invoke('t1')).json(), 'first');
            assert.equal((await rt.invoke('t2')).json(), 'first');
            assert.equal(rt.fake.matching('POST', WORK).length, 2);
        });

        it('publishes through the shipped SDK found by user code', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.publish', nodePath: false });
            const res = await rt.invoke('p1', '{"v":1}', b64({ custom: { subject: 'in/topic' } }));
            assert.equal(res.json(), 'published');
            const [pub] = rt.fake.matching('POST', `${API}functions/${ROUTER}`);
            assert.equal(pub.headers['x-amz-invocation-type'], 'Event');
            assert.deepEqual(JSON.parse(Buffer.from(pub.headers['x-amz-client-context'], 'base64')),
                { custom: { source: ARN, subject: 'out/in/topic', queueFullPolicy: '' } });
            assert.equal(pub.body.toString(), '{"v":1}');
        });
    });

    describe('handled errors', () => {
        for (const [handler, type, message] of [
            ['throws', 'RangeError', 'the sensor is on fire'],
            ['callbackError', 'TypeError', 'bad input'],
            ['rejects', 'Error', 'rejected'],
            ['fail', 'Error', 'old failure'],
        ]) {
            it(`posts ${handler} as a Handled error document`, async (t) => {
                const rt = await startRuntime(t, { handler: `index.${handler}` });
                const res = await rt.invoke('e1', '{}');
                assert.equal(res.handled, 'Handled');
                const doc = res.json();
                assert.equal(doc.errorMessage, message);
                assert.equal(doc.errorType, type);
                assert.ok(Array.isArray(doc.stackTrace) && doc.stackTrace.length > 0);
                assert.ok(doc.stackTrace.some((l) => l.includes('index.js')), 'the user frame is there');
                assert.ok(!doc.stackTrace.some((l) => l.includes('lambda_nodejs_runtime.js') || l.includes('node_modules')),
                    `runtime frames are not: ${doc.stackTrace}`);
                // The runtime survives the error.
                assert.equal((await rt.invoke('e2', '{}')).handled, 'Handled');
            });
        }

        it('posts a string error as errorMessage', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.callbackString' });
            const res = await rt.invoke('e1');
            assert.equal(res.handled, 'Handled');
            assert.deepEqual(res.json(), { errorMessage: 'just a string', stackTrace: [] });
        });

        it('posts a result that cannot be serialised as a handled error', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.circular' });
            const res = await rt.invoke('e1');
            assert.equal(res.handled, 'Handled');
            assert.equal(res.json().errorType, 'TypeError');
            assert.match(res.json().errorMessage, /circular/i);
        });

        it('posts a payload that is not JSON as a handled error', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.echo' });
            const res = await rt.invoke('e1', '{not json');
            assert.equal(res.handled, 'Handled');
            assert.equal(res.json().errorType, 'SyntaxError');
        });
    });

    describe('binary functions', () => {
        it('hands the payload over as a Buffer and posts a Buffer result as raw bytes', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.binary', encoding: 'binary' });
            const res = await rt.invoke('b1', Buffer.from([0x00, 0x80, 0x7b]));
            assert.equal(res.handled, undefined);
            assert.deepEqual([...res.body], [...Buffer.from('got:'), 0x00, 0x80, 0x7b, 0xff]);
        });

        it('does not parse JSON and serialises other results as JSON', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.text', encoding: 'binary' });
            const res = await rt.invoke('b1', '{"looks":"like json"}');
            assert.equal(res.body.toString('utf8'), '"caf\u00e9"');
        });
    });

    describe('the core', () => {
        it('is retried while it answers 503 to get work', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.later' });
            rt.fake.failWorkGets = 3;
            assert.equal((await rt.invoke('w1')).json(), 'later');
            assert.ok(rt.fake.matching('GET', WORK).length >= 4);
            assert.match(rt.stdout(), /\[WARN\]-lambda_nodejs_runtime\.js:\d+,Failed to get work from the core, retrying/);
        });

        it('receives the runtime log lines at the local log sink', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.throws' });
            await rt.invoke('l1');
            await rt.fake.waitUntil(() => rt.fake.logEvents().some((e) => e.message.includes('the sensor is on fire')));
            const e = rt.fake.logEvents().find((x) => x.message.includes('the sensor is on fire'));
            assert.equal(e.group, '/Lambda/us-east-1/123456789012/TestFn');
            assert.match(e.message, /^\[ERROR\]-lambda_nodejs_runtime\.js:\d+,Handler "index\.throws" failed/);
        });

        it('stops the runtime with SIGTERM: the v1 log line and exit status 0', async (t) => {
            const rt = await startRuntime(t, { handler: 'index.echo' });
            await rt.fake.waitFor('GET', WORK);
            rt.proc.kill('SIGTERM');
            const { code, signal } = await rt.exited;
            assert.equal(signal, null);
            assert.equal(code, 0);
            assert.match(rt.stdout(), /\[INFO\]-lambda_nodejs_runtime\.js:\d+,Caught SIGTERM\. Stopping runtime\.\n/);
        });
    });
});
