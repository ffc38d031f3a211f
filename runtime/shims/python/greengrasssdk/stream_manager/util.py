"""Util, v1's public helpers for the JSON payloads of SiteWise and S3
export streams (spec 2.5): camelCase keys, enums as their values, empty
lists left out."""
import json

from .exceptions import ValidationException
from .model import invalid


def _drop_empty_lists(d):
    # v1 drops empty lists from maps at any depth, but not from maps inside
    # lists; the same JSON comes out here.
    for key, value in list(d.items()):
        if isinstance(value, list) and not value:
            del d[key]
        elif isinstance(value, dict):
            _drop_empty_lists(value)
    return d


class Util:
    @staticmethod
    def validate_and_serialize_to_json_bytes(data):
        """Validates data (a data class instance) as the client validates
        requests and returns its JSON as bytes; ValidationException names
        the first problem."""
        problem = invalid(data)
        if problem:
            raise ValidationException(problem)
        return json.dumps(_drop_empty_lists(data.as_dict())).encode()

    @staticmethod
    def deserialize_json_bytes_to_obj(bytes, type):
        """The instance of type (a data class) that JSON bytes describe."""
        return type.from_dict(json.loads(bytes))
