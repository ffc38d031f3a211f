# A v1 Python function using the SDK the way users do: shadow update and
# get, invoke of another function, publish.
import json
import greengrasssdk

iot = greengrasssdk.client('iot-data')
lam = greengrasssdk.client('lambda')


def handler(event, context):
    iot.update_thing_shadow(thingName='dev', payload=json.dumps({'state': {'reported': {'seen': event}}}))
    shadow = json.loads(iot.get_thing_shadow(thingName='dev')['payload'])
    r = lam.invoke(FunctionName='arn:aws:lambda:us-east-1:123456789012:function:node:1',
                   InvocationType='RequestResponse', Payload=json.dumps({'from': 'py'}))
    node = json.loads(r['Payload'].read())
    iot.publish(topic='py/out', payload=json.dumps({
        'subject': context.client_context.custom['subject'],
        'shadowVersion': shadow['version'],
        'seen': shadow['state']['reported']['seen'],
        'node': node,
    }))
