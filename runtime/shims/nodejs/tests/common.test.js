'use strict';

// aws-greengrass-common-js: ARNs, versions, retry, environment, logger.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { describe, it } = require('node:test');
const { Writable } = require('node:stream');

const { FakeIPC } = require('./fakeipc');
const { ARN, MODULES, TOKEN, shipped } = require('./support');

const common = shipped('aws-greengrass-common-js');

describe('FunctionArnFields', () => {
    const { FunctionArnFields, buildFunctionArn } = common;

    it('splits a qualified ARN', () => {
        const f = new FunctionArnFields(ARN);
        assert.equal(f.region, 'us-east-1');
        assert.equal(f.accountId, '123456789012');
        assert.equal(f.name, 'TestFn');
        assert.equal(f.qualifier, '7');
        assert.equal(f.unqualifiedArn, 'arn:aws:lambda:us-east-1:123456789012:function:TestFn');
    });

    it('takes $LATEST, aliases and the region-less system ARNs', () => {
        assert.equal(new FunctionArnFields('arn:aws:lambda:eu-west-2:123456789012:function:F:$LATEST').qualifier, '$LATEST');
        const router = new FunctionArnFields('arn:aws:lambda:::function:GGRouter');
        assert.equal(router.name, 'GGRouter');
        assert.equal(router.qualifier, '');
        assert.equal(router.unqualifiedArn, 'arn:aws:lambda:::function:GGRouter');
        assert.equal(new FunctionArnFields('arn:aws:lambda:::function:GGSecretManager:1').qualifier, '1');
    });

    it('refuses what is not a function ARN', () => {
        for (const bad of ['', 'GGRouter', 'arn:aws:s3:::bucket', 'arn:aws:lambda:us-east-1:123:function:F', undefined]) {
            assert.throws(() => new FunctionArnFields(bad), /Cannot parse/, String(bad));
        }
    });

    it('builds qualified ARNs', () => {
        assert.equal(buildFunctionArn('arn:aws:lambda:us-east-1:123456789012:function:F', '3'), 'arn:aws:lambda:us-east-1:123456789012:function:F:3');
        assert.equal(buildFunctionArn('arn:aws:lambda:us-east-1:123456789012:function:F', ''), 'arn:aws:lambda:us-east-1:123456789012:function:F');
        assert.equal(FunctionArnFields.buildFunctionArn('arn:aws:lambda:::function:X', undefined), 'arn:aws:lambda:::function:X');
    });
});

describe('versionParser', () => {
    const { parseVersion, interfaceVersionProblem } = common.versionParser;

    it('parses major.minor[.patch]', () => {
        assert.deepEqual(parseVersion('1.5'), { major: 1, minor: 5, patch: 0 });
        assert.deepEqual(parseVersion('1.10.2'), { major: 1, minor: 10, patch: 2 });
        assert.throws(() => parseVersion('1'), /Cannot parse/);
        assert.throws(() => parseVersion(undefined), /Cannot parse/);
    });

    it('wants the same major and at most the core minor', () => {
        assert.equal(interfaceVersionProblem('1.5', '1.5'), null);
        assert.equal(interfaceVersionProblem('1.5', '1.3'), null);
        assert.match(interfaceVersionProblem('1.5', '1.6'), /not supported/);
        assert.match(interfaceVersionProblem('2.0', '1.5'), /not supported/);
    });
});

describe('encodingType and envVars', () => {
    it('names the two encodings', () => {
        assert.deepEqual({ ...common.encodingType }, { encodingTypeJSON: 'json', encodingTypeBinary: 'binary' });
    });

    it('reads the environment at load, with the v1 system ARNs as defaults', () => {
        const script = `console.log(JSON.stringify(require('aws-greengrass-common-js').envVars))`;
        const out = execFileSync(process.execPath, ['-e', script], {
            env: {
                NODE_PATH: MODULES,
                AWS_CONTAINER_AUTHORIZATION_TOKEN: TOKEN,
                MY_FUNCTION_ARN: ARN,
                ENCODING_TYPE: 'binary',
                GGC_MAX_INTERFACE_VERSION: '1.5',
            },
        });
        const env = JSON.parse(out);
        assert.equal(env.AUTH_TOKEN, TOKEN);
        assert.equal(env.MY_FUNCTION_ARN, ARN);
        assert.equal(env.ENCODING_TYPE, 'binary');
        assert.equal(env.GGC_MAX_INTERFACE_VERSION, '1.5');
        assert.equal(env.ROUTER_FUNCTION_ARN, 'arn:aws:lambda:::function:GGRouter');
        assert.equal(env.SHADOW_FUNCTION_ARN, 'arn:aws:lambda:::function:GGShadowService');
        assert.equal(env.SECRETS_MANAGER_FUNCTION_ARN, 'arn:aws:lambda:::function:GGSecretManager:1');
    });
});

describe('BackoffRetry', () => {
    const { BackoffRetry } = common;

    it('doubles from 50 ms up to 500 ms by default', () => {
        const r = new BackoffRetry();
        assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => r.delayFor(n)), [50, 100, 200, 400, 500, 500]);
    });

    it('retries until the operation succeeds', (t, done) => {
        let calls = 0;
        new BackoffRetry(1, 2, 4, 10, 3000, true).run((cb) => {
            calls += 1;
            if (calls < 3) {
                cb(new Error('ECONNREFUSED'));
            } else {
                cb(null, 'a', 'b');
            }
        }, (err, a, b) => {
            assert.ifError(err);
            assert.deepEqual([calls, a, b], [3, 'a', 'b']);
            done();
        });
    });

    it('gives up after maxAttempts with the last error', (t, done) => {
        let calls = 0;
        new BackoffRetry(1, 2, 2, 4, 3000, false).run((cb) => {
            calls += 1;
            cb(new Error(`failure ${calls}`));
        }, (err) => {
            assert.equal(calls, 4);
            assert.equal(err.message, 'failure 4');
            done();
        });
    });

    it('does not retry what shouldRetry refuses', (t, done) => {
        let calls = 0;
        new BackoffRetry(1).run((cb) => {
            calls += 1;
            const err = new Error('forbidden');
            err.statusCode = 403;
            cb(err);
        }, (err) => {
            assert.equal(calls, 1);
            assert.equal(err.statusCode, 403);
            done();
        }, (err) => !err.statusCode);
    });
});

describe('logging.LocalWatchLogger', () => {
    it('writes v1 lines and ships them to the local log sink', async () => {
        const fake = await new FakeIPC(TOKEN).listen();
        const saved = { ...process.env };
        process.env.GG_DAEMON_PORT = String(fake.port);
        process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = TOKEN;
        try {
            const lines = [];
            const stream = new Writable({ write(chunk, enc, cb) { lines.push(chunk.toString()); cb(); } });
            const logger = new common.logging.LocalWatchLogger('/Lambda/us-east-1/123456789012/TestFn', { stream });
            logger.info('hello %s', 'world');
            logger.debug('hidden at INFO');
            logger.warn('careful');
            assert.match(lines[0], /^\[INFO\]-common\.test\.js:\d+,hello world\n$/);
            assert.match(lines[1], /^\[WARN\]-common\.test\.js:\d+,careful\n$/);
            assert.equal(lines.length, 2);
            await new Promise((resolve) => logger.flush(2000, resolve));
            await fake.waitUntil(() => fake.logEvents().length >= 2);
            const events = fake.logEvents();
            assert.deepEqual(events.map((e) => [e.group, e.stream, e.message]), [
                ['/Lambda/us-east-1/123456789012/TestFn', 'fromNodeAppender', lines[0].trim()],
                ['/Lambda/us-east-1/123456789012/TestFn', 'fromNodeAppender', lines[1].trim()],
            ]);
            assert.ok(events.every((e) => Number.isInteger(e.timestamp)));
        } finally {
            process.env = saved;
            await fake.close();
        }
    });

    it('writes to the file from the group logger level in EVERGREEN_LAMBDA_LOG_LEVEL', async () => {
        const fake = await new FakeIPC(TOKEN).listen();
        const saved = { ...process.env };
        process.env.GG_DAEMON_PORT = String(fake.port);
        process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = TOKEN;
        try {
            const write = (lines) => new Writable({ write(chunk, enc, cb) { lines.push(chunk.toString()); cb(); } });
            process.env.EVERGREEN_LAMBDA_LOG_LEVEL = 'WARN';
            const warnLines = [];
            const warn = new common.logging.LocalWatchLogger('/Lambda/us-east-1/123456789012/TestFn', { stream: write(warnLines) });
            warn.info('info under WARN');
            warn.error('an error');
            assert.equal(warnLines.length, 1);
            assert.match(warnLines[0], /^\[ERROR\]-common\.test\.js:\d+,an error\n$/);
            await new Promise((resolve) => warn.flush(2000, resolve));
            // The sink still gets INFO: the core filters it for CloudWatch.
            await fake.waitUntil(() => fake.logEvents().length >= 2);
            assert.deepEqual(fake.logEvents().map((e) => e.message.replace(/-common\.test\.js:\d+/, '')),
                ['[INFO],info under WARN', '[ERROR],an error']);

            process.env.EVERGREEN_LAMBDA_LOG_LEVEL = 'debug';
            const debugLines = [];
            const debug = new common.logging.LocalWatchLogger(undefined, { stream: write(debugLines) });
            debug.debug('details');
            assert.equal(debugLines.length, 1);
            assert.match(debugLines[0], /^\[DEBUG\]/);
        } finally {
            process.env = saved;
            await fake.close();
        }
    });
});
