// A v1 Node.js function: answers invokes, republishes routed messages.
const ggSdk = require('aws-greengrass-core-sdk');
const iot = new ggSdk.IotData();

exports.handler = function (event, context, callback) {
  const subject = context.clientContext.Custom.subject;
  if (!subject) {
    return callback(null, { node: true, got: event });
  }
  iot.publish({ topic: 'node/out', payload: JSON.stringify({ subject, event }) }, (err) => callback(err));
};
