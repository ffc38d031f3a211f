"""The machinery behind the data classes of package data: a class lists its
fields once and gets what v1's generated classes have by hand: keyword
(and positional) constructor arguments with v1's defaults, a property per
field with _get_<name>/_set_<name> (the setters type-check as v1's do),
as_dict/from_dict with camelCase keys, _types_map/_validations_map, a
short repr, and __slots__ so that a misspelt attribute fails.

invalid(obj) is v1's client-side validation: required fields, lengths,
item counts, ranges, patterns and types, nested objects and list items
included. It returns the first problem as a message, or None.
"""
import enum
import inspect
import re
from reprlib import repr as limited_repr

__all__ = ['Field', 'Model', 'WireEnum', 'invalid']

_CHECKS = ('minLength', 'maxLength', 'minItems', 'maxItems', 'minimum', 'maximum', 'pattern')


def _camel(name):
    head, *rest = name.split('_')
    return head + ''.join(p[:1].upper() + p[1:] for p in rest)


class Field(object):
    """One field: its Python name, its type (the item type for a list
    field: list_of=...), whether v1 requires it, its constructor default,
    its wire key (camelCase of the name unless given) and v1's checks
    (minLength, maxLength, minItems, maxItems, minimum, maximum, pattern)."""

    __slots__ = ('name', 'type', 'list_of', 'required', 'default', 'key', 'checks')

    def __init__(self, name, type_=None, list_of=None, required=False, default=None, key=None, **checks):
        for c in checks:
            if c not in _CHECKS:
                raise TypeError('unknown check {!r} on field {}'.format(c, name))
        self.name = name
        self.type = list if list_of is not None else type_
        self.list_of = list_of
        self.required = required
        self.default = default
        self.key = key or _camel(name)
        self.checks = checks


def _type_name(t):
    return getattr(t, '__qualname__', getattr(t, '__name__', str(t)))


def _accessors(f):
    slot = '_v_' + f.name

    def get(self):
        return getattr(self, slot)

    def set_(self, value):
        if value is None and not f.required:
            setattr(self, slot, value)
            return
        if not isinstance(value, f.type):
            raise TypeError('{} must be {}'.format(f.name, _type_name(f.type)))
        if f.list_of is not None and not all(isinstance(i, f.list_of) for i in value):
            raise TypeError('{} list values must be {}'.format(f.name, _type_name(f.list_of)))
        setattr(self, slot, value)

    get.__name__, set_.__name__ = '_get_' + f.name, '_set_' + f.name
    return get, set_


class _ModelMeta(type):
    def __new__(mcs, name, bases, ns):
        fields = tuple(ns.get('_fields', ()))
        ns['_fields'] = fields
        ns['__slots__'] = tuple('_v_' + f.name for f in fields)
        for f in fields:
            get, set_ = _accessors(f)
            ns['_get_' + f.name] = get
            ns['_set_' + f.name] = set_
            ns[f.name] = property(get, set_)
        ns['_types_map'] = {f.name: {'type': f.type, 'subtype': f.list_of} for f in fields}
        ns['_validations_map'] = {f.name: dict(required=f.required, **f.checks) for f in fields}
        ns['_formats_map'] = {}
        cls = super().__new__(mcs, name, bases, ns)
        # What help() and inspect show for the constructor.
        cls.__signature__ = inspect.Signature(
            [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default) for f in fields])
        return cls


class Model(metaclass=_ModelMeta):
    """Base of the data classes; subclasses set _fields."""

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError('{}() takes at most {} arguments ({} given)'.format(
                type(self).__name__, len(fields), len(args)))
        for f, v in zip(fields, args):
            if f.name in kwargs:
                raise TypeError('{}() got multiple values for argument {!r}'.format(type(self).__name__, f.name))
            kwargs[f.name] = v
        for f in fields:
            # As in v1, the constructor stores what it is given; invalid()
            # reports a wrong type when the object is sent or serialized.
            setattr(self, '_v_' + f.name, kwargs.pop(f.name, f.default))
        if kwargs:
            raise TypeError('{}() got an unexpected keyword argument {!r}'.format(
                type(self).__name__, sorted(kwargs)[0]))

    def as_dict(self):
        d = {}
        for f in self._fields:
            v = getattr(self, '_v_' + f.name)
            if v is None:
                continue
            if f.list_of is not None and isinstance(v, list):
                d[f.key] = [_to_wire(i) for i in v]
            else:
                d[f.key] = _to_wire(v)
        return d

    @classmethod
    def from_dict(cls, d):
        v = {}
        for f in cls._fields:
            if f.key not in d:
                continue
            raw = d[f.key]
            if raw is None:
                v[f.name] = None
            elif f.list_of is not None:
                v[f.name] = [_from_wire(f.list_of, i) for i in raw]
            else:
                v[f.name] = _from_wire(f.type, raw)
        return cls(**v)

    def __repr__(self):
        parts = []
        for f in self._fields:
            v = getattr(self, '_v_' + f.name)
            if isinstance(v, bytes):
                v = v[:20]
            parts.append('{}: {}'.format(f.name, limited_repr(v)))
        return '<Class {}. {}>'.format(type(self).__name__, ', '.join(parts))


class WireEnum(enum.Enum):
    """An enum that travels as its value."""

    @classmethod
    def from_dict(cls, d):
        return cls(d)

    def as_dict(self):
        return self.value

    def __repr__(self):
        return '<Enum {}. {}: {}>'.format(type(self).__name__, limited_repr(self.name), limited_repr(self.value))


def _to_wire(v):
    return v.as_dict() if hasattr(v, 'as_dict') else v


def _from_wire(t, raw):
    if hasattr(t, 'from_dict'):
        return t.from_dict(raw)
    if t is bytes and isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    return raw


_patterns = {}


def _fullmatch(pattern, s):
    rx = _patterns.get(pattern)
    if rx is None:
        rx = _patterns[pattern] = re.compile(pattern)
    return rx.fullmatch(s) is not None


def invalid(o):
    """The first problem v1's validation finds in o (a Model), or None."""
    fields = getattr(type(o), '_fields', None)
    if fields is None:
        return None
    for f in fields:
        v = getattr(o, '_v_' + f.name)
        if v is None:
            if f.required:
                return 'Property {} is required, but was None'.format(f.name)
            continue
        if not isinstance(v, f.type):
            return 'Property {} is invalid because it must be of type {}'.format(f.name, _type_name(f.type))
        c = f.checks
        if 'minLength' in c and len(v) < c['minLength']:
            return 'Property {} must have a minimum length of {}, but found length of {}'.format(
                f.name, c['minLength'], len(v))
        if 'maxLength' in c and len(v) > c['maxLength']:
            return 'Property {} must have a maximum length of {}, but found length of {}'.format(
                f.name, c['maxLength'], len(v))
        if 'minItems' in c and len(v) < c['minItems']:
            return 'Property {} must have at least {} items, but found {}'.format(f.name, c['minItems'], len(v))
        if 'maxItems' in c and len(v) > c['maxItems']:
            return 'Property {} must have at most {} items, but found {}'.format(f.name, c['maxItems'], len(v))
        if 'maximum' in c and v > c['maximum']:
            return 'Property {} must be at most {}'.format(f.name, c['maximum'])
        if 'minimum' in c and v < c['minimum']:
            return 'Property {} must be at least {}'.format(f.name, c['minimum'])
        if 'pattern' in c and not _fullmatch(c['pattern'], v):
            return 'Property {} must match regex {}'.format(f.name, c['pattern'])
        if f.list_of is not None:
            for i, item in enumerate(v):
                if not isinstance(item, f.list_of):
                    return 'Property {}[{}] is invalid because it must be of type {}'.format(
                        f.name, i, _type_name(f.list_of))
                problem = invalid(item)
                if problem:
                    return 'Property {}[{}] is invalid because {}'.format(f.name, i, problem)
        else:
            problem = invalid(v)
            if problem:
                return 'Property {} is invalid because {}'.format(f.name, problem)
    return None
