'use strict';

// aws-greengrass-core-sdk: the encodings of spec 1.8 on the wire and the
// callback shapes of the v1 Node.js API.

const assert = require('node:assert/strict');
const { after, before, beforeEach, describe, it } = require('node:test');
const { promisify } = require('node:util');

const { FakeIPC, API } = require('./fakeipc');
const { ARN, TOKEN, shipped } = require('./support');

// envVars are read when the SDK is first required, as on a real core.
process.env.MY_FUNCTION_ARN = ARN;
process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = TOKEN;
delete process.env.ROUTER_FUNCTION_ARN;
delete process.env.SHADOW_FUNCTION_ARN;
delete process.env.SECRETS_MANAGER_FUNCTION_ARN;
const GG = shipped('aws-greengrass-core-sdk');

const ROUTER = 'arn:aws:lambda:::function:GGRouter';
const SHADOW = 'arn:aws:lambda:::function:GGShadowService';
const SECRETS = 'arn:aws:lambda:::function:GGSecretManager:1';
const OTHER = 'arn:aws:lambda:us-east-1:123456789012:function:Other';

function clientContextOf(r) {
    return JSON.parse(Buffer.from(r.headers['x-amz-client-context'], 'base64').toString('utf8'));
}

describe('aws-greengrass-core-sdk', () => {
    let fake;

    before(async () => {
        fake = await new FakeIPC(TOKEN).listen();
        process.env.GG_DAEMON_PORT = String(fake.port);
    });
    after(() => fake.close());
    beforeEach(() => {
        fake.requests = [];
        fake.answers.clear();
        fake.nextId = 1;
    });

    it('exports the v1 client classes', () => {
        assert.equal(typeof GG.IotData, 'function');
        assert.equal(typeof GG.Lambda, 'function');
        assert.equal(typeof GG.SecretsManager, 'function');
        assert.equal(GG.GreengrassInterfaceVersion, '1.5');
    });

    describe('IotData.publish', () => {
        it('posts an Event to GGRouter with source, subject and policy in the client context', async () => {
            const iot = new GG.IotData();
            const data = await promisify(iot.publish.bind(iot))({ topic: 'some/topic', payload: 'hello', queueFullPolicy: 'AllOrError' });
            assert.equal(fake.requests.length, 1, 'an Event needs no get_work_result');
            const [r] = fake.requests;
            assert.equal(r.method, 'POST');
            assert.equal(r.path, `${API}functions/${ROUTER}`);
            assert.equal(r.headers['x-amz-invocation-type'], 'Event');
            assert.equal(r.body.toString(), 'hello');
            assert.deepEqual(clientContextOf(r), { custom: { source: ARN, subject: 'some/topic', queueFullPolicy: 'AllOrError' } });
            assert.equal(data.StatusCode, 202);
        });

        it('defaults queueFullPolicy to an empty string and takes Buffers', async () => {
            const iot = new GG.IotData();
            await promisify(iot.publish.bind(iot))({ topic: 't', payload: Buffer.from([1, 2, 3]) });
            const [r] = fake.requests;
            assert.deepEqual(clientContextOf(r).custom.queueFullPolicy, '');
            assert.deepEqual([...r.body], [1, 2, 3]);
        });

        it('passes BestEffort and refuses unknown policies without a request', async () => {
            const iot = new GG.IotData();
            const publish = promisify(iot.publish.bind(iot));
            await publish({ topic: 't', payload: '', queueFullPolicy: 'BestEffort' });
            assert.equal(clientContextOf(fake.requests[0]).custom.queueFullPolicy, 'BestEffort');
            await assert.rejects(publish({ topic: 't', payload: '', queueFullPolicy: 'AllOrException' }), /queueFullPolicy/);
            await assert.rejects(publish({ payload: 'x' }), /topic/);
            assert.equal(fake.requests.length, 1);
        });

        it('reports a core that refuses the message', async () => {
            fake.postWorkStatus = 429;
            try {
                const iot = new GG.IotData();
                await assert.rejects(promisify(iot.publish.bind(iot))({ topic: 't', payload: 'x', queueFullPolicy: 'AllOrError' }),
                    (err) => err.statusCode === 429);
            } finally {
                fake.postWorkStatus = null;
            }
        });
    });

    describe('IotData shadows', () => {
        const cases = [
            ['getThingShadow', 'get', {}, ''],
            ['updateThingShadow', 'update', { payload: '{"state":{"desired":{"on":true}}}' }, '{"state":{"desired":{"on":true}}}'],
            ['deleteThingShadow', 'delete', {}, ''],
        ];
        for (const [method, op, extra, body] of cases) {
            it(`${method} asks GGShadowService with the ${op} topic and returns {payload}`, async () => {
                fake.answer('inv-1', '{"state":{},"version":3}', '');
                const iot = new GG.IotData();
                const data = await promisify(iot[method].bind(iot))({ thingName: 'Lamp-1', ...extra });
                assert.deepEqual(data, { payload: '{"state":{},"version":3}' });
                const [post, get] = fake.requests;
                assert.equal(post.method, 'POST');
                assert.equal(post.path, `${API}functions/${SHADOW}`);
                assert.equal(post.headers['x-amz-invocation-type'], 'RequestResponse');
                assert.deepEqual(clientContextOf(post), { custom: { subject: `$aws/things/Lamp-1/shadow/${op}` } });
                assert.equal(post.body.toString(), body);
                assert.equal(get.method, 'GET');
                assert.equal(get.path, `${API}functions/${SHADOW}`);
                assert.equal(get.headers['x-amz-invocationid'], 'inv-1');
            });
        }

        it('turns a shadow error document into an error', async () => {
            fake.answer('inv-1', '{"code":404,"message":"No shadow exists with name: Lamp-1"}', '');
            const iot = new GG.IotData();
            await assert.rejects(promisify(iot.getThingShadow.bind(iot))({ thingName: 'Lamp-1' }),
                (err) => err.code === 404 && /No shadow exists/.test(err.message));
        });

        it('turns a function error into an error', async () => {
            fake.answer('inv-1', '{"errorMessage":"Task timed out"}', 'Unhandled');
            const iot = new GG.IotData();
            await assert.rejects(promisify(iot.getThingShadow.bind(iot))({ thingName: 'Lamp-1' }),
                (err) => err.functionError === 'Unhandled');
        });

        it('requires thingName, and payload for updates', async () => {
            const iot = new GG.IotData();
            await assert.rejects(promisify(iot.getThingShadow.bind(iot))({}), /thingName/);
            await assert.rejects(promisify(iot.updateThingShadow.bind(iot))({ thingName: 'x' }), /payload/);
            assert.equal(fake.requests.length, 0);
        });
    });

    describe('Lambda.invoke', () => {
        it('RequestResponse: A then B, data {FunctionError, StatusCode, Payload}', async () => {
            fake.answer('inv-1', '{"sum":3}', '');
            const lambda = new GG.Lambda();
            const data = await promisify(lambda.invoke.bind(lambda))({
                FunctionName: `${OTHER}:2`, ClientContext: 'eyJjdXN0b20iOnsiYSI6MX19', Payload: '{"a":1,"b":2}',
            });
            assert.deepEqual(data, { FunctionError: '', StatusCode: 200, Payload: '{"sum":3}' });
            const [post, get] = fake.requests;
            assert.equal(post.path, `${API}functions/${OTHER}:2`);
            assert.equal(post.headers['x-amz-invocation-type'], 'RequestResponse');
            assert.equal(post.headers['x-amz-client-context'], 'eyJjdXN0b20iOnsiYSI6MX19');
            assert.equal(post.body.toString(), '{"a":1,"b":2}');
            assert.equal(get.method, 'GET');
            assert.equal(get.path, `${API}functions/${OTHER}:2`);
            assert.equal(get.headers['x-amz-invocationid'], 'inv-1');
        });

        it('passes a handled error through as data, not err', async () => {
            fake.answer('inv-1', '{"errorMessage":"nope"}', 'Handled');
            const lambda = new GG.Lambda();
            const data = await promisify(lambda.invoke.bind(lambda))({ FunctionName: `${OTHER}:2` });
            assert.deepEqual(data, { FunctionError: 'Handled', StatusCode: 200, Payload: '{"errorMessage":"nope"}' });
        });

        it('Event: A only, StatusCode 202, empty client context header', async () => {
            const lambda = new GG.Lambda();
            const data = await promisify(lambda.invoke.bind(lambda))({ FunctionName: OTHER, Qualifier: '5', InvocationType: 'Event', Payload: Buffer.from('x') });
            assert.deepEqual(data, { FunctionError: '', StatusCode: 202, Payload: '' });
            assert.equal(fake.requests.length, 1);
            const [post] = fake.requests;
            assert.equal(post.path, `${API}functions/${OTHER}:5`, 'Qualifier is appended to an unqualified ARN');
            assert.equal(post.headers['x-amz-invocation-type'], 'Event');
            assert.equal(post.headers['x-amz-client-context'], '');
        });

        it('refuses bad arguments before any request', async () => {
            const lambda = new GG.Lambda();
            const invoke = promisify(lambda.invoke.bind(lambda));
            await assert.rejects(invoke({}), /FunctionName/);
            await assert.rejects(invoke({ FunctionName: 'not-an-arn' }), /function ARN/);
            await assert.rejects(invoke({ FunctionName: `${OTHER}:2`, Qualifier: '3' }), /does not match/);
            await assert.rejects(invoke({ FunctionName: OTHER, InvocationType: 'DryRun' }), /InvocationType/);
            await assert.rejects(invoke({ FunctionName: OTHER, ClientContext: 'not base64!' }), /Base64/);
            await assert.rejects(invoke({ FunctionName: OTHER, Payload: { a: 1 } }), /Payload/);
            assert.equal(fake.requests.length, 0);
        });

        it('accepts a Blob payload', async () => {
            const lambda = new GG.Lambda();
            await promisify(lambda.invoke.bind(lambda))({ FunctionName: OTHER, InvocationType: 'Event', Payload: new Blob(['blob!']) });
            assert.equal(fake.requests[0].body.toString(), 'blob!');
        });
    });

    describe('SecretsManager.getSecretValue', () => {
        const secret = {
            ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf',
            Name: 'db',
            VersionId: 'v1',
            SecretString: 's3cr3t',
            VersionStages: ['AWSCURRENT'],
            CreatedDate: 1700000000000,
        };

        it('posts {SecretId, VersionStage} to GGSecretManager:1 and returns the text', async () => {
            fake.answer('inv-1', JSON.stringify(secret), '');
            const sm = new GG.SecretsManager();
            const data = await promisify(sm.getSecretValue.bind(sm))({ SecretId: 'db', VersionStage: 'AWSPREVIOUS' });
            assert.equal(data, JSON.stringify(secret));
            const [post, get] = fake.requests;
            assert.equal(post.path, `${API}functions/${SECRETS}`);
            assert.equal(post.headers['x-amz-invocation-type'], 'RequestResponse');
            assert.equal(post.headers['x-amz-client-context'], '');
            assert.deepEqual(JSON.parse(post.body), { SecretId: 'db', VersionStage: 'AWSPREVIOUS' });
            assert.equal(get.path, `${API}functions/${SECRETS}`);
        });

        it('omits VersionStage when not given and parses with DeStringifyResultFlag', async () => {
            fake.answer('inv-1', JSON.stringify(secret), '');
            const sm = new GG.SecretsManager();
            const data = await promisify(sm.getSecretValue.bind(sm))({ SecretId: 'db', DeStringifyResultFlag: true });
            assert.deepEqual(data, secret);
            assert.deepEqual(JSON.parse(fake.requests[0].body), { SecretId: 'db' });
        });

        it('turns {Status, Message} into an error', async () => {
            fake.answer('inv-1', '{"Status":404,"Message":"Secret not found"}', '');
            const sm = new GG.SecretsManager();
            await assert.rejects(promisify(sm.getSecretValue.bind(sm))({ SecretId: 'nope' }),
                (err) => err.statusCode === 404 && /Secret not found/.test(err.message));
        });

        it('refuses VersionId and a missing SecretId', async () => {
            const sm = new GG.SecretsManager();
            const get = promisify(sm.getSecretValue.bind(sm));
            await assert.rejects(get({ SecretId: 'db', VersionId: 'v1' }), /Query by VersionId is not yet supported/);
            await assert.rejects(get({}), /SecretId/);
            assert.equal(fake.requests.length, 0);
        });
    });
});
