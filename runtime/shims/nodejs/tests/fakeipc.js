'use strict';

// A stand-in for the core's IPC endpoints (spec 1.3), strict about what it
// accepts, that records every request. It checks the bytes Node.js clients
// send; the behaviour of the real daemon is tested against the Go server.

const { EventEmitter } = require('events');
const http = require('http');

const API = '/2016-11-01/';
const VALID_BASE64 = /^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$/;

class FakeIPC extends EventEmitter {
    constructor(token) {
        super();
        this.token = token;
        this.requests = [];
        this.work = [];
        this.workWaiters = [];
        this.answers = new Map();
        this.failWorkGets = 0;
        this.nextId = 1;
        this.postWorkStatus = null;
        this.server = http.createServer((req, res) => this.receive(req, res));
        this.sockets = new Set();
        this.server.on('connection', (s) => {
            this.sockets.add(s);
            s.on('close', () => this.sockets.delete(s));
        });
    }

    listen() {
        return new Promise((resolve) => {
            this.server.listen(0, '127.0.0.1', () => {
                this.port = this.server.address().port;
                resolve(this);
            });
        });
    }

    close() {
        for (const w of this.workWaiters) {
            w(null);
        }
        this.workWaiters = [];
        for (const s of this.sockets) {
            s.destroy();
        }
        return new Promise((resolve) => this.server.close(() => resolve()));
    }

    // --- scripting ---------------------------------------------------------

    enqueueWork(invocationId, payload = Buffer.alloc(0), clientContext = '') {
        const item = { invocationId, payload: Buffer.from(payload), clientContext };
        const waiter = this.workWaiters.shift();
        if (waiter) {
            waiter(item);
        } else {
            this.work.push(item);
        }
    }

    // What getWorkResult returns for invocationId; functionError null scripts
    // a core that omits the header (spec 1.5 says it never should).
    answer(invocationId, payload, functionError = '', status = 200) {
        this.answers.set(invocationId, { payload: Buffer.from(payload), functionError, status });
    }

    // --- inspection --------------------------------------------------------

    matching(method, path) {
        return this.requests.filter((r) => r.method === method && r.path === path);
    }

    waitFor(method, path, count = 1, timeoutMs = 10000) {
        return this.waitUntil(() => {
            const found = this.matching(method, path);
            return found.length >= count ? found : null;
        }, timeoutMs, `${method} ${path}`);
    }

    waitUntil(predicate, timeoutMs = 10000, what = 'condition') {
        return new Promise((resolve, reject) => {
            const check = () => {
                const v = predicate(this.requests);
                if (v) {
                    cleanup();
                    resolve(v);
                    return true;
                }
                return false;
            };
            const timer = setTimeout(() => {
                cleanup();
                reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.requests.map((r) => `${r.method} ${r.path}`))}`));
            }, timeoutMs);
            const cleanup = () => {
                clearTimeout(timer);
                this.removeListener('request', check);
            };
            if (!check()) {
                this.on('request', check);
            }
        });
    }

    logEvents() {
        const events = [];
        for (const r of this.matching('POST', `${API}cloudwatch/logs/`)) {
            const doc = JSON.parse(r.body.toString('utf8'));
            for (const e of doc.logEvents) {
                events.push({ group: doc.logGroupName, stream: doc.logStreamName, message: e.message, timestamp: e.timestamp });
            }
        }
        return events;
    }

    // --- serving -----------------------------------------------------------

    receive(req, res) {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const r = {
                method: req.method,
                path: req.url,
                headers: req.headers,
                rawHeaders: req.rawHeaders,
                body: Buffer.concat(chunks),
            };
            this.requests.push(r);
            this.route(r, res);
            this.emit('request');
        });
    }

    route(r, res) {
        const reply = (status, body = '', headers = {}) => {
            const data = Buffer.from(body);
            res.writeHead(status, { ...headers, 'Content-Length': data.length });
            res.end(data);
        };
        if (r.headers.authorization !== this.token) {
            return reply(403, 'bad token');
        }
        if (!r.path.startsWith(API) || r.path.includes('%')) {
            return reply(404, 'not an IPC path');
        }
        const rest = r.path.slice(API.length);
        if (rest === 'cloudwatch/logs/' && r.method === 'POST') {
            let doc;
            try {
                doc = JSON.parse(r.body.toString('utf8'));
            } catch (e) {
                return reply(400, 'not JSON');
            }
            if (!doc.logGroupName || !doc.logStreamName || !Array.isArray(doc.logEvents)) {
                return reply(400, 'bad log body');
            }
            return reply(200);
        }
        if (!rest.startsWith('functions/')) {
            return reply(404, 'unknown');
        }
        const parts = rest.slice('functions/'.length).split('/');
        const arn = parts[0];
        if (!arn.startsWith('arn:aws:lambda:')) {
            return reply(404, 'not a function ARN');
        }
        if (parts.length === 1 && r.method === 'POST') {
            return this.postWork(r, reply);
        }
        if (parts.length === 1 && r.method === 'GET') {
            return this.getWorkResult(r, reply);
        }
        if (parts.length === 2 && parts[1] === 'work' && r.method === 'GET') {
            return this.getWork(r, res, reply);
        }
        if (parts.length === 2 && parts[1] === 'work' && r.method === 'POST') {
            if (!r.headers['x-amz-invocationid']) {
                return reply(400, 'missing X-Amz-InvocationId');
            }
            const fe = r.headers['x-amz-function-error'];
            if (fe !== undefined) {
                if (fe !== 'Handled') {
                    return reply(400, 'bad X-Amz-Function-Error');
                }
                try {
                    const doc = JSON.parse(r.body.toString('utf8'));
                    if (typeof doc.errorMessage !== 'string' || !Array.isArray(doc.stackTrace)) {
                        return reply(400, 'bad error document');
                    }
                } catch (e) {
                    return reply(400, 'error body is not JSON');
                }
            }
            return reply(200);
        }
        if (parts.length === 2 && parts[1] === 'initialized' && r.method === 'PUT') {
            try {
                const doc = JSON.parse(r.body.toString('utf8'));
                const keys = Object.keys(doc).sort().join(',');
                if (keys !== 'Response,Success' || typeof doc.Success !== 'boolean' || typeof doc.Response !== 'string') {
                    return reply(400, 'bad initialized body');
                }
            } catch (e) {
                return reply(400, 'initialized body is not JSON');
            }
            return reply(200);
        }
        return reply(404, 'unknown');
    }

    postWork(r, reply) {
        const type = r.headers['x-amz-invocation-type'];
        if (type !== 'RequestResponse' && type !== 'Event') {
            return reply(400, 'bad invocation type');
        }
        const cc = r.headers['x-amz-client-context'];
        if (cc === undefined) {
            return reply(400, 'missing client context header');
        }
        if (cc !== '' && !VALID_BASE64.test(cc)) {
            return reply(400, 'client context is not base64');
        }
        if (this.postWorkStatus) {
            return reply(this.postWorkStatus, 'scripted failure');
        }
        const id = `inv-${this.nextId}`;
        this.nextId += 1;
        return reply(type === 'Event' ? 202 : 200, '', { 'X-Amz-InvocationId': id });
    }

    getWorkResult(r, reply) {
        const id = r.headers['x-amz-invocationid'];
        if (!id) {
            return reply(400, 'missing X-Amz-InvocationId');
        }
        const a = this.answers.get(id) || { payload: Buffer.alloc(0), functionError: '', status: 200 };
        const headers = a.functionError === null ? {} : { 'X-Amz-Function-Error': a.functionError };
        return reply(a.status, a.payload, headers);
    }

    getWork(r, res, reply) {
        if (this.failWorkGets > 0) {
            this.failWorkGets -= 1;
            return reply(503, 'not now');
        }
        const send = (item) => {
            if (!item) {
                return reply(503, 'closing');
            }
            return reply(200, item.payload, {
                'X-Amz-InvocationId': item.invocationId,
                'X-Amz-Client-Context': item.clientContext,
            });
        };
        if (this.work.length > 0) {
            return send(this.work.shift());
        }
        // Long poll; a client that leaves loses its place.
        const waiter = (item) => send(item);
        this.workWaiters.push(waiter);
        res.on('close', () => {
            const i = this.workWaiters.indexOf(waiter);
            if (i >= 0) {
                this.workWaiters.splice(i, 1);
            }
        });
        return undefined;
    }
}

module.exports = { FakeIPC, API };
