# Reads the secret the event names with the v1 SDK and publishes what it
# got (or the error) on secret/out.
import json
import greengrasssdk

sm = greengrasssdk.client('secretsmanager')
iot = greengrasssdk.client('iot-data')


def handler(event, context):
    try:
        r = sm.get_secret_value(SecretId=event['id'])
        out = {'fn': context.function_name, 'value': r.get('SecretString'), 'name': r.get('Name'),
               'stages': r.get('VersionStages')}
    except Exception as e:
        out = {'fn': context.function_name, 'error': str(e)}
    iot.publish(topic='secret/out', payload=json.dumps(out))
