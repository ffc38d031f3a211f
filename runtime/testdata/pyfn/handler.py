# A v1-style Python function: greengrasssdk publish and invoke.
import json
import greengrasssdk

iot = greengrasssdk.client('iot-data')
lam = greengrasssdk.client('lambda')


def function_handler(event, context):
    subject = context.client_context.custom.get('subject', '')
    if event.get('invoke'):
        r = lam.invoke(FunctionName=event['invoke'], InvocationType='RequestResponse', Payload=json.dumps({'ping': 1}))
        iot.publish(topic='py/invoked', payload=r['Payload'].read())
        return
    iot.publish(topic='py/out', payload=json.dumps({'subject': subject, 'event': event, 'arn': context.invoked_function_arn}))
    return {'ok': True}
