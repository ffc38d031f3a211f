"""The classic Greengrass v1 hello world, written against the v1 Core SDK.

Pinned (long-lived): as soon as the core starts it, the module publishes
"Hello world! Sent from Greengrass Core running on platform: <system>-<release>"
to hello/world, and again every five seconds. The group routes hello/world to
the cloud and to the device sensor-1.

The handler (invoked when sensor-1 publishes on hello/sensor-1/ping) sends one
greeting at once, so a device need not wait for the next tick.
"""

import logging
import os
import platform
import sys
from threading import Timer

import greengrasssdk

logging.basicConfig(stream=sys.stdout, level=logging.INFO)
logger = logging.getLogger(__name__)

client = greengrasssdk.client("iot-data")
TOPIC = os.environ.get("HELLO_TOPIC", "hello/world")
INTERVAL_SECONDS = 5
GREETING = "Hello world! Sent from Greengrass Core running on platform: {}-{}".format(
    platform.system(), platform.release()
)


def greet():
    try:
        client.publish(topic=TOPIC, queueFullPolicy="AllOrException", payload=GREETING)
    except Exception as e:
        logger.error("Failed to publish message: %r", e)


def greet_every_interval():
    greet()
    timer = Timer(INTERVAL_SECONDS, greet_every_interval)
    timer.daemon = True
    timer.start()


greet_every_interval()


def function_handler(event, context):
    greet()
