// A v1-style Node.js function: aws-greengrass-core-sdk publish.
const ggSdk = require('aws-greengrass-core-sdk');
const iotClient = new ggSdk.IotData();

exports.handler = function (event, context, callback) {
  const subject = context.clientContext.Custom.subject || '';
  iotClient.publish({
    topic: 'node/out',
    payload: JSON.stringify({ subject: subject, event: event, arn: context.invokedFunctionArn }),
  }, (err) => callback(err, { ok: true }));
};
