# Sleeps as long as the event says (keeping its one pinned worker busy),
# then says so on slow/done.
import json
import time
import greengrasssdk

iot = greengrasssdk.client('iot-data')


def handler(event, context):
    time.sleep(event.get('sleep', 0))
    iot.publish(topic='slow/done', payload=json.dumps({'fn': context.function_name}))
