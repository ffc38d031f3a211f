'use strict';

// The wire format of every IPCClient call (spec 1.3, 1.9).

const assert = require('node:assert/strict');
const { after, before, beforeEach, describe, it } = require('node:test');

const { FakeIPC, API } = require('./fakeipc');
const { ARN, TOKEN, shipped } = require('./support');

const IPCClient = shipped('aws-greengrass-ipc-sdk-js');
const TARGET = 'arn:aws:lambda:us-east-1:123456789012:function:Other:$LATEST';

describe('IPCClient', () => {
    let fake;
    let ipc;

    before(async () => {
        fake = await new FakeIPC(TOKEN).listen();
        process.env.GG_DAEMON_PORT = String(fake.port);
    });
    after(() => fake.close());
    beforeEach(() => {
        fake.requests = [];
        ipc = new IPCClient(TOKEN);
    });

    it('is the module itself and a named export', () => {
        assert.equal(typeof IPCClient, 'function');
        assert.equal(IPCClient.IPCClient, IPCClient);
    });

    it('postWork sends A and calls back with the invocation id', (t, done) => {
        ipc.postWork(TARGET, Buffer.from('{"x":1}'), 'eyJhIjoxfQ==', 'RequestResponse', (err, id) => {
            assert.ifError(err);
            assert.match(id, /^inv-\d+$/);
            const [r] = fake.requests;
            assert.equal(r.method, 'POST');
            // Unescaped: the $ and colons are on the wire as they are.
            assert.equal(r.path, `${API}functions/${TARGET}`);
            assert.equal(r.headers.authorization, TOKEN);
            assert.equal(r.headers['x-amz-client-context'], 'eyJhIjoxfQ==');
            assert.equal(r.headers['x-amz-invocation-type'], 'RequestResponse');
            assert.equal(r.body.toString(), '{"x":1}');
            assert.ok(r.rawHeaders.includes('X-Amz-Invocation-Type'), 'v1 header-name casing');
            done();
        });
    });

    it('postWork sends an empty client context header and an empty body when given none', (t, done) => {
        ipc.postWork(TARGET, undefined, undefined, 'Event', (err, id) => {
            assert.ifError(err);
            assert.match(id, /^inv-\d+$/);
            const [r] = fake.requests;
            assert.equal(r.headers['x-amz-client-context'], '');
            assert.equal(r.headers['x-amz-invocation-type'], 'Event');
            assert.equal(r.body.length, 0);
            done();
        });
    });

    it('getWorkResult sends B and passes body, function error and status code', (t, done) => {
        fake.answer('inv-9', '{"ok":true}', 'Handled');
        ipc.getWorkResult(TARGET, 'inv-9', (err, body, functionError, statusCode) => {
            assert.ifError(err);
            const [r] = fake.requests;
            assert.equal(r.method, 'GET');
            assert.equal(r.path, `${API}functions/${TARGET}`);
            assert.equal(r.headers['x-amz-invocationid'], 'inv-9');
            assert.equal(r.headers.authorization, TOKEN);
            assert.ok(Buffer.isBuffer(body));
            assert.equal(body.toString(), '{"ok":true}');
            assert.equal(functionError, 'Handled');
            assert.equal(statusCode, 200);
            done();
        });
    });

    it('getWorkResult reports an empty function error on success', (t, done) => {
        fake.answer('inv-3', 'fine', '');
        ipc.getWorkResult(TARGET, 'inv-3', (err, body, functionError) => {
            assert.ifError(err);
            assert.equal(body.toString(), 'fine');
            assert.equal(functionError, '');
            done();
        });
    });

    it('getWork sends C and passes payload, invocation id and client context', (t, done) => {
        fake.enqueueWork('inv-7', Buffer.from([0, 1, 255]), 'e30=');
        ipc.getWork(ARN, (err, payload, invocationId, clientContext) => {
            assert.ifError(err);
            const [r] = fake.requests;
            assert.equal(r.method, 'GET');
            assert.equal(r.path, `${API}functions/${ARN}/work`);
            assert.equal(r.headers.authorization, TOKEN);
            assert.deepEqual([...payload], [0, 1, 255]);
            assert.equal(invocationId, 'inv-7');
            assert.equal(clientContext, 'e30=');
            done();
        });
    });

    it('getWork waits for work (long poll)', (t, done) => {
        ipc.getWork(ARN, (err, payload, invocationId) => {
            assert.ifError(err);
            assert.equal(invocationId, 'late');
            done();
        });
        setTimeout(() => fake.enqueueWork('late', 'x'), 200);
    });

    it('postWorkResult sends D', (t, done) => {
        ipc.postWorkResult(ARN, '{"answer":42}', 'inv-4', (err) => {
            assert.ifError(err);
            const [r] = fake.requests;
            assert.equal(r.method, 'POST');
            assert.equal(r.path, `${API}functions/${ARN}/work`);
            assert.equal(r.headers['x-amz-invocationid'], 'inv-4');
            assert.equal(r.headers['x-amz-function-error'], undefined);
            assert.equal(r.body.toString(), '{"answer":42}');
            done();
        });
    });

    it('postHandlerErr sends E with X-Amz-Function-Error: Handled', (t, done) => {
        const doc = JSON.stringify({ errorMessage: 'boom', errorType: 'Error', stackTrace: ['at x'] });
        ipc.postHandlerErr(ARN, doc, 'inv-5', (err) => {
            assert.ifError(err);
            const [r] = fake.requests;
            assert.equal(r.method, 'POST');
            assert.equal(r.path, `${API}functions/${ARN}/work`);
            assert.equal(r.headers['x-amz-invocationid'], 'inv-5');
            assert.equal(r.headers['x-amz-function-error'], 'Handled');
            assert.equal(r.body.toString(), doc);
            done();
        });
    });

    it('putInitializationResult sends F for success and failure', (t, done) => {
        ipc.putInitializationResult(ARN, null, (err) => {
            assert.ifError(err);
            ipc.putInitializationResult(ARN, new TypeError('no such module'), (err2) => {
                assert.ifError(err2);
                const [ok, failed] = fake.requests;
                assert.equal(ok.method, 'PUT');
                assert.equal(ok.path, `${API}functions/${ARN}/initialized`);
                assert.deepEqual(JSON.parse(ok.body), { Success: true, Response: '' });
                assert.deepEqual(JSON.parse(failed.body), { Success: false, Response: 'TypeError("no such module")' });
                done();
            });
        });
    });

    it('turns HTTP errors into errors with a status code', (t, done) => {
        const wrong = new IPCClient('wrong token');
        wrong.postWork(TARGET, 'x', '', 'Event', (err, id) => {
            assert.ok(err instanceof Error);
            assert.equal(err.statusCode, 403);
            assert.equal(id, undefined);
            done();
        });
    });

    it('turns connection failures into errors without a status code', (t, done) => {
        const nowhere = new IPCClient(TOKEN, { host: '127.0.0.1', port: 1 });
        nowhere.getWork(ARN, (err) => {
            assert.ok(err instanceof Error);
            assert.equal(err.statusCode, undefined);
            assert.ok(err.code, 'a system error code such as ECONNREFUSED');
            done();
        });
    });

    it('reads GG_DAEMON_PORT when constructed', () => {
        assert.equal(new IPCClient(TOKEN).port, fake.port);
    });
});
