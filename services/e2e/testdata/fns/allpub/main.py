# Publishes on all/out with the queueFullPolicy the event names and reports
# on allpub/result whether the core took the message.
import json
import greengrasssdk

iot = greengrasssdk.client('iot-data')


def handler(event, context):
    try:
        iot.publish(topic='all/out', payload=json.dumps({'n': event['n']}), queueFullPolicy=event['policy'])
        result = 'ok'
    except Exception as e:
        result = 'refused: {}'.format(e)
    iot.publish(topic='allpub/result', payload=json.dumps({'n': event['n'], 'result': result}))
