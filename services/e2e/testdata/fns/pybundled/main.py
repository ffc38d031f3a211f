# A v1 Python function packaged the way users package theirs: the test zips
# this file with a copy of greengrasssdk next to it. Triggered by a device,
# it reports which greengrasssdk it imported, works a shadow (update, get,
# delete, then two requests the shadow service refuses, which the SDK
# raises as ShadowError), invokes another function and publishes it all.
import json
import os

import greengrasssdk
from greengrasssdk.IoTDataPlane import ShadowError

iot = greengrasssdk.client('iot-data')
lam = greengrasssdk.client('lambda')


def refused(call):
    try:
        call()
    except ShadowError as e:
        return 'ShadowError: {}'.format(e)
    return 'no error'


def handler(event, context):
    thing = event['thing']
    out = {'sdk': greengrasssdk.__file__, 'cwd': os.getcwd()}
    iot.update_thing_shadow(thingName=thing, payload=json.dumps({'state': {'reported': {'by': 'py'}}}))
    doc = json.loads(iot.get_thing_shadow(thingName=thing)['payload'])
    out['reported'] = doc['state']['reported']
    out['deleted'] = 'version' in json.loads(iot.delete_thing_shadow(thingName=thing)['payload'])
    out['getAfterDelete'] = refused(lambda: iot.get_thing_shadow(thingName=thing))
    out['badUpdate'] = refused(lambda: iot.update_thing_shadow(thingName=thing, payload='not json'))
    r = lam.invoke(FunctionName=event['answer'], InvocationType='RequestResponse',
                   Payload=json.dumps({'from': 'py'}))
    out['answer'] = json.loads(r['Payload'].read())
    iot.publish(topic='bundled/py/out', payload=json.dumps(out))
