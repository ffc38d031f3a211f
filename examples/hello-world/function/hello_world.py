"""Hello world for Evergreen, written against the Greengrass v1 Core SDK.

Pinned (long-lived): at start it publishes a greeting to hello/world every
five seconds, which the group routes to the cloud. When sensor-1 publishes to
hello/sensor-1/ping, the handler answers on hello/sensor-1/pong.
"""

import json
import os
import platform
import threading

import greengrasssdk

client = greengrasssdk.client("iot-data")
TOPIC = os.environ.get("HELLO_TOPIC", "hello/world")
INTERVAL_SECONDS = 5


def publish_greeting():
    client.publish(
        topic=TOPIC,
        payload=json.dumps({"message": "Hello world from Evergreen on " + platform.platform()}),
    )
    timer = threading.Timer(INTERVAL_SECONDS, publish_greeting)
    timer.daemon = True
    timer.start()


publish_greeting()


def function_handler(event, context):
    subject = context.client_context.custom.get("subject", "")
    parts = subject.split("/")
    if len(parts) == 3 and parts[0] == "hello" and parts[2] == "ping":
        client.publish(
            topic="hello/{}/pong".format(parts[1]),
            payload=json.dumps({"pong": event}),
        )
