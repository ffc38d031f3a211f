// A v1 Node.js function packaged the way users package theirs: the test
// zips this file with node_modules/aws-greengrass-core-sdk. Triggered by a
// device, it reports which SDK it loaded, works a shadow (update, get,
// delete, then two requests the shadow service refuses), invokes another
// function and publishes it all.
const ggSdk = require('aws-greengrass-core-sdk');

const iot = new ggSdk.IotData();
const lambda = new ggSdk.Lambda();

const call = (client, op, params) => new Promise((resolve) => {
  client[op](params, (err, data) => resolve({ err, data }));
});

async function work(event) {
  const thing = event.thing;
  const out = {
    sdk: Object.keys(require.cache).filter((k) => k.includes('aws-greengrass-core-sdk')),
    resolved: require.resolve('aws-greengrass-core-sdk'),
    cwd: process.cwd(),
  };
  let r = await call(iot, 'updateThingShadow', { thingName: thing, payload: JSON.stringify({ state: { reported: { by: 'node' } } }) });
  if (r.err) throw r.err;
  r = await call(iot, 'getThingShadow', { thingName: thing });
  if (r.err) throw r.err;
  out.reported = JSON.parse(r.data.payload).state.reported;
  r = await call(iot, 'deleteThingShadow', { thingName: thing });
  if (r.err) throw r.err;
  out.deleted = 'version' in JSON.parse(r.data.payload);
  r = await call(iot, 'getThingShadow', { thingName: thing });
  out.getAfterDelete = r.err ? `${r.err.code}: ${r.err.message}` : 'no error';
  r = await call(iot, 'updateThingShadow', { thingName: thing, payload: 'not json' });
  out.badUpdate = r.err ? `${r.err.code}: ${r.err.message}` : 'no error';
  r = await call(lambda, 'invoke', { FunctionName: event.answer, InvocationType: 'RequestResponse', Payload: JSON.stringify({ from: 'node' }) });
  if (r.err) throw r.err;
  out.answer = JSON.parse(r.data.Payload);
  r = await call(iot, 'publish', { topic: 'bundled/node/out', payload: JSON.stringify(out) });
  if (r.err) throw r.err;
}

exports.handler = (event, context, callback) => {
  work(event).then(() => callback(null), (err) => callback(err));
};
