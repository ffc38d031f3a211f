'use strict';

// Greengrass v1 Node.js Lambda runtime, as provided by Evergreen.
//
//     node lambda_nodejs_runtime.js --handler=index.handler
//
// The core starts this in the function's code directory. It requires the
// handler module once, reports the outcome to the core (PUT .../initialized),
// then loops: fetch a work item (long poll), call handler(event, context,
// callback), post the result or the error. SIGTERM stops it with status 0.

const Module = require('module');
const path = require('path');

// User code finds the core-shipped libraries through NODE_PATH; the launcher
// sets it, and this keeps a bare `node lambda_nodejs_runtime.js` working too.
const SHIPPED_MODULES = path.join(__dirname, 'node_modules');
if (!(process.env.NODE_PATH || '').split(path.delimiter).includes(SHIPPED_MODULES)) {
    process.env.NODE_PATH = [process.env.NODE_PATH, SHIPPED_MODULES].filter(Boolean).join(path.delimiter);
    try {
        Module._initPaths();
    } catch (e) {
        // An unknown Node.js: user code then needs NODE_PATH from the launcher.
    }
}

const IPCClient = require('aws-greengrass-ipc-sdk-js');
const {
    BackoffRetry, FunctionArnFields, config, encodingType, logging, versionParser,
} = require('aws-greengrass-common-js');
const { defaultLogGroup } = require('aws-greengrass-common-js/localWatchLogger');

const ENCODINGS = [encodingType.encodingTypeJSON, encodingType.encodingTypeBinary];
const DEFAULT_TIMEOUT_MS = 3000;
// How long the core may be unreachable before the worker gives up; the core
// restarts the workers it needs, so an orphan must not linger.
const GIVE_UP_AFTER_MS = 60000;
const SHIPPED_SDK_INDEX = path.join(SHIPPED_MODULES, 'aws-greengrass-core-sdk', 'index.js');

function positiveInt(text) {
    const n = Number.parseInt(text, 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
}

// A network failure or a 5xx may pass; a 4xx will not.
function isTransient(err) {
    return !err.statusCode || err.statusCode >= 500;
}

function parseHandlerArg(argv) {
    for (let i = 0; i < argv.length; i += 1) {
        if (argv[i].startsWith('--handler=')) {
            return argv[i].slice('--handler='.length);
        }
        if (argv[i] === '--handler' && i + 1 < argv.length) {
            return argv[i + 1];
        }
    }
    return '';
}

// What keeps the runtime from starting (spec 1.7): missing or malformed
// environment, or a core whose interface version the shipped SDK exceeds.
function environmentProblems(env) {
    const found = [];
    if (!env.MY_FUNCTION_ARN) {
        found.push('MY_FUNCTION_ARN is not set');
    } else {
        try {
            new FunctionArnFields(env.MY_FUNCTION_ARN); // eslint-disable-line no-new
        } catch (e) {
            found.push(e.message);
        }
    }
    if (!env.AWS_CONTAINER_AUTHORIZATION_TOKEN) {
        found.push('AWS_CONTAINER_AUTHORIZATION_TOKEN is not set');
    }
    if (!ENCODINGS.includes(env.ENCODING_TYPE)) {
        found.push(`ENCODING_TYPE must be json or binary, got "${env.ENCODING_TYPE || ''}"`);
    }
    try {
        const problem = versionParser.interfaceVersionProblem(env.GGC_MAX_INTERFACE_VERSION, config.INTERFACE_VERSION);
        if (problem) {
            found.push(problem);
        }
    } catch (e) {
        found.push(`GGC_MAX_INTERFACE_VERSION must be major.minor, got "${env.GGC_MAX_INTERFACE_VERSION || ''}"`);
    }
    return found;
}

// A copy of aws-greengrass-core-sdk the function bundles must suit the core
// as well; copies that do not say their interface version are trusted.
function checkBundledSdks(maxVersion) {
    for (const [file, mod] of Object.entries(require.cache)) {
        if (file === SHIPPED_SDK_INDEX || !/[\\/]aws-greengrass-core-sdk[\\/]index\.js$/.test(file)) {
            continue;
        }
        const version = mod && mod.exports && mod.exports.GreengrassInterfaceVersion;
        if (typeof version === 'string') {
            const problem = versionParser.interfaceVersionProblem(maxVersion, version);
            if (problem) {
                throw new Error(`${problem} (${file})`);
            }
        }
    }
}

// "a.b.c": module "a.b" relative to cwd, function "c".
function loadHandler(handlerName, cwd, maxVersion) {
    const dot = handlerName.lastIndexOf('.');
    if (dot <= 0 || dot === handlerName.length - 1) {
        throw new Error(`Handler "${handlerName}" is not of the form module.function`);
    }
    const moduleName = handlerName.slice(0, dot);
    const functionName = handlerName.slice(dot + 1);
    const mod = require(path.resolve(cwd, moduleName)); // eslint-disable-line global-require, import/no-dynamic-require
    const handler = mod === null || mod === undefined ? undefined : mod[functionName];
    if (typeof handler !== 'function') {
        throw new Error(`Handler "${functionName}" is not a function exported by module "${moduleName}"`);
    }
    checkBundledSdks(maxVersion);
    return handler;
}

// X-Amz-Client-Context (base64 JSON) as Node v1 handlers see it; anything
// unreadable is an empty context, so handlers can always read .Custom.
function decodeClientContext(encoded, logger) {
    let custom = {};
    if (encoded) {
        try {
            const doc = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'));
            if (doc && typeof doc.custom === 'object' && doc.custom !== null && !Array.isArray(doc.custom)) {
                custom = doc.custom;
            }
        } catch (e) {
            logger.warn('Ignoring a client context that is not base64 JSON');
        }
    }
    return { client: {}, Custom: custom, env: {} };
}

function decodeEvent(payload, encoding) {
    if (encoding === encodingType.encodingTypeBinary) {
        return payload;
    }
    if (payload.length === 0) {
        return {};
    }
    return JSON.parse(payload.toString('utf8'));
}

// JSON.stringify of the result, undefined as null; a binary function's
// Buffer goes out as its bytes (its JSON would be {"type":"Buffer",...}).
function encodeResult(result, encoding) {
    if (encoding === encodingType.encodingTypeBinary && (Buffer.isBuffer(result) || ArrayBuffer.isView(result))) {
        return Buffer.from(result.buffer, result.byteOffset, result.byteLength);
    }
    const text = JSON.stringify(result);
    return Buffer.from(text === undefined ? 'null' : text, 'utf8');
}

// A frame of the runtime, its shipped modules or Node.js itself.
function isRuntimeFrame(line) {
    return line.includes(__dirname + path.sep) || /\(node:|^at node:/.test(line);
}

// The stack without its message line and without the frames below the
// handler (the runtime's own, and Node's that called it).
function stackLines(err) {
    if (typeof err.stack !== 'string') {
        return [];
    }
    const lines = err.stack.split('\n').slice(1).map((line) => line.trim()).filter((line) => line.startsWith('at '));
    while (lines.length > 0 && isRuntimeFrame(lines[lines.length - 1])) {
        lines.pop();
    }
    return lines;
}

function errorDocument(err) {
    if (err instanceof Error) {
        return {
            errorMessage: err.message,
            errorType: err.name || (err.constructor && err.constructor.name) || 'Error',
            stackTrace: stackLines(err),
        };
    }
    let message;
    if (typeof err === 'string') {
        message = err;
    } else {
        try {
            message = JSON.stringify(err);
        } catch (e) {
            message = undefined;
        }
        if (message === undefined) {
            message = String(err);
        }
    }
    return { errorMessage: message, stackTrace: [] };
}

class Runtime {
    constructor(handlerName, env) {
        this.handlerName = handlerName;
        this.functionArn = env.MY_FUNCTION_ARN || '';
        this.authToken = env.AWS_CONTAINER_AUTHORIZATION_TOKEN || '';
        this.encoding = env.ENCODING_TYPE;
        this.maxInterfaceVersion = env.GGC_MAX_INTERFACE_VERSION;
        this.timeoutMs = positiveInt(env.EVERGREEN_FUNCTION_TIMEOUT_MS) || DEFAULT_TIMEOUT_MS;
        this.memoryLimitInMB = positiveInt(env.EVERGREEN_FUNCTION_MEMORY_MB);
        this.logGroupName = defaultLogGroup(this.functionArn);
        this.logger = new logging.LocalWatchLogger(this.logGroupName);
        this.ipc = new IPCClient(this.authToken);
        this.handler = null;
        this.stopping = false;
    }

    exit(status) {
        this.logger.flush(1000, () => process.exit(status));
    }

    onSigterm() {
        if (this.stopping) {
            return;
        }
        this.stopping = true;
        this.logger.info('Caught SIGTERM. Stopping runtime.');
        this.logger.flush(500, () => process.exit(0));
    }

    reportInit(error, callback) {
        this.ipc.putInitializationResult(this.functionArn, error, (err) => {
            if (err) {
                this.logger.error('Failed to report initialization to the core: %s', err.message);
            }
            callback();
        });
    }

    start() {
        const problems = environmentProblems(process.env);
        if (!this.handlerName) {
            problems.push('no handler given: want --handler=module.function');
        }
        if (problems.length > 0) {
            problems.forEach((p) => this.logger.fatal('Cannot start the runtime: %s', p));
            if (this.functionArn && this.authToken) {
                this.reportInit(new Error(problems.join('; ')), () => this.exit(1));
            } else {
                this.exit(1);
            }
            return;
        }
        try {
            this.handler = loadHandler(this.handlerName, process.cwd(), this.maxInterfaceVersion);
        } catch (err) {
            this.logger.fatal('Failed to import handler function "%s" due to exception: %s', this.handlerName,
                err && err.message);
            this.logger.error('%s', err && err.stack);
            this.reportInit(err instanceof Error ? err : new Error(String(err)), () => this.exit(1));
            return;
        }
        this.reportInit(null, () => this.serve());
    }

    serve() {
        const retry = new BackoffRetry(50, 2, 500, Infinity, GIVE_UP_AFTER_MS, true);
        retry.onRetry = (err, attempt) => {
            if (attempt === 1) {
                this.logger.warn('Failed to get work from the core, retrying: %s', err.message);
            }
        };
        retry.run((done) => this.ipc.getWork(this.functionArn, done), (err, payload, invocationId, clientContext) => {
            if (this.stopping) {
                return;
            }
            if (err) {
                this.logger.fatal('Giving up on the core: %s', err.message);
                this.exit(1);
                return;
            }
            this.handle(payload, invocationId, clientContext, () => this.serve());
        }, isTransient);
    }

    context(invocationId, clientContext, startedAt) {
        const fields = new FunctionArnFields(this.functionArn);
        const deadline = startedAt + this.timeoutMs;
        return {
            invokedFunctionArn: this.functionArn,
            awsRequestId: invocationId,
            functionName: fields.name,
            functionVersion: fields.qualifier || '$LATEST',
            clientContext: decodeClientContext(clientContext, this.logger),
            identity: undefined,
            memoryLimitInMB: this.memoryLimitInMB,
            logGroupName: this.logGroupName,
            logStreamName: this.logger.logStreamName,
            // A worker lives on after each invocation, so nothing waits for
            // the event loop; the flag is kept for handlers that set it.
            callbackWaitsForEmptyEventLoop: true,
            getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
        };
    }

    // Calls the handler; whichever comes first of the callback, context.done
    // / succeed / fail, a throw or the returned promise settling is the
    // outcome: finish(failed, value).
    invoke(event, context, finish) {
        let settled = false;
        const settle = (failed, value) => {
            if (settled) {
                this.logger.warn('Invocation %s already completed; ignoring a later outcome', context.awsRequestId);
                return;
            }
            settled = true;
            finish(failed, value);
        };
        const callback = (err, result) => {
            if (err !== undefined && err !== null) {
                settle(true, err);
            } else {
                settle(false, result);
            }
        };
        context.done = callback;
        context.succeed = (result) => settle(false, result);
        context.fail = (err) => settle(true, err === undefined || err === null ? new Error('the function failed') : err);
        let returned;
        try {
            returned = this.handler(event, context, callback);
        } catch (err) {
            settle(true, err);
            return;
        }
        if (returned && typeof returned.then === 'function') {
            returned.then((result) => settle(false, result),
                (err) => settle(true, err === undefined || err === null ? new Error('the promise was rejected') : err));
        }
    }

    handle(payload, invocationId, clientContext, next) {
        const context = this.context(invocationId, clientContext, Date.now());
        const post = (failed, value) => {
            let body;
            let isError = failed;
            if (!failed) {
                try {
                    body = encodeResult(value, this.encoding);
                } catch (err) {
                    isError = true;
                    value = err; // eslint-disable-line no-param-reassign
                }
            }
            if (isError) {
                const doc = errorDocument(value);
                const where = doc.stackTrace.length > 0 ? `\n    ${doc.stackTrace.join('\n    ')}` : '';
                this.logger.error('Handler "%s" failed: %s%s', this.handlerName,
                    doc.errorType ? `${doc.errorType}: ${doc.errorMessage}` : doc.errorMessage, where);
                body = JSON.stringify(doc);
            }
            const send = (done) => (isError
                ? this.ipc.postHandlerErr(this.functionArn, body, invocationId, done)
                : this.ipc.postWorkResult(this.functionArn, body, invocationId, done));
            new BackoffRetry().run(send, (err) => {
                if (err) {
                    this.logger.error('Failed to post the result of invocation %s: %s', invocationId, err.message);
                }
                next();
            }, isTransient);
        };
        let event;
        try {
            event = decodeEvent(payload, this.encoding);
        } catch (err) {
            post(true, err);
            return;
        }
        this.invoke(event, context, post);
    }
}

function main(argv) {
    const runtime = new Runtime(parseHandlerArg(argv), process.env);
    process.on('SIGTERM', () => runtime.onSigterm());
    runtime.start();
    return runtime;
}

if (require.main === module) {
    main(process.argv.slice(2));
}

module.exports = {
    Runtime, decodeClientContext, decodeEvent, encodeResult, errorDocument, environmentProblems, loadHandler, main,
};
