"""Greengrass Core SDK for Python (the v1 public API), as provided by
Evergreen for functions that do not bundle their own copy.

    import greengrasssdk
    iot = greengrasssdk.client('iot-data')
    iot.publish(topic='hello/world', payload=b'hi')
"""
from .client import client
from .Lambda import StreamingBody

__version__ = '1.6.1'
INTERFACE_VERSION = '1.5'
