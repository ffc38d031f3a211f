'use strict';

const path = require('path');

const SHIM_DIR = path.resolve(__dirname, '..');
const MODULES = path.join(SHIM_DIR, 'node_modules');

module.exports = {
    SHIM_DIR,
    MODULES,
    RUNTIME: path.join(SHIM_DIR, 'lambda_nodejs_runtime.js'),
    TOKEN: 'Basic dGVzdDp0b2tlbg==',
    ARN: 'arn:aws:lambda:us-east-1:123456789012:function:TestFn:7',
    // Requires a shipped module the way user code would find it.
    shipped: (name) => require(path.join(MODULES, name)), // eslint-disable-line global-require, import/no-dynamic-require
};
