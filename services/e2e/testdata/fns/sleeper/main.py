# Sleeps as long as the event says, then returns its worker's pid.
import os
import time


def handler(event, context):
    time.sleep(event.get('sleep', 0))
    return {'pid': os.getpid()}
