"""The SDK 1.0-era message envelope: JSON {"Payload": <base64>, "ExtensionMap_": {...}}.

Current SDKs no longer use it; it is kept because old function bundles
import it.
"""
import base64
import json


class GreengrassMessage:
    def __init__(self, payload=b'', **extension_map):
        self.payload = payload
        self.extension_map = extension_map

    @classmethod
    def decode(cls, encoded):
        if isinstance(encoded, bytes):
            encoded = encoded.decode('utf-8')
        if not encoded:
            return cls()
        doc = json.loads(encoded)
        payload = base64.b64decode(doc.get('Payload') or '')
        return cls(payload, **(doc.get('ExtensionMap_') or {}))

    def encode(self):
        payload = self.payload
        if isinstance(payload, str):
            payload = payload.encode('utf-8')
        return json.dumps({
            'Payload': base64.b64encode(payload or b'').decode('ascii'),
            'ExtensionMap_': self.extension_map,
        })
