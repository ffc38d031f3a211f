"""The stream manager's data model (spec 2.4 and 2.5), as v1's SDK names
it: the classes users build (MessageStreamDefinition, ExportDefinition and
its configs, ReadMessagesOptions, the S3 and SiteWise payloads), the ones
the client returns (Message, MessageStreamInfo, StatusMessage), and the
internal requests and responses. Constructor keywords, defaults, property
names, wire keys and checks are v1's; see model.py for the machinery.
"""
from ..model import Field, Model, WireEnum

# ^[\w ,.\-_]*$ as v1 writes it: Python's \w, so a name the server refuses
# (non-ASCII) passes here and comes back as InvalidRequestException, as in v1.
NAME_PATTERN = r'^[\w ,.\-_]*$'
_PRINTABLE = r'[^\x00-\x1f\x7f]+'
_S3_BUCKET = (r'(?=^.{3,63}$)(?!^(\d+\.)+\d+$)'
              r'(^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$)')
_S3_KEY = r'''^([^\\{ }%`\[\]"'><~#^?|]|!\{[a-zA-Z]+:[a-zA-Z/]+\})*$'''
_INT64_MAX = 9223372036854775807
_INT32_MAX = 2147483647
_MILLIS_MAX = 9223372036854


def _request_id(required=True):
    return Field('request_id', str, required=required, minLength=1, pattern=NAME_PATTERN)


def _name(field='name'):
    return Field(field, str, required=True, minLength=1, maxLength=255, pattern=NAME_PATTERN)


def _identifier():
    return Field('identifier', str, required=True, minLength=1, maxLength=255, pattern=NAME_PATTERN)


def _export_common(max_batch):
    return (
        Field('batch_size', int, maximum=max_batch, minimum=1),
        Field('batch_interval_millis', int, maximum=_MILLIS_MAX, minimum=60000),
        Field('priority', int, maximum=10, minimum=1),
        Field('start_sequence_number', int, maximum=_INT64_MAX, minimum=0),
        Field('disabled', bool),
    )


# --- enums ---------------------------------------------------------------

class VersionInfo(WireEnum):
    """(Internal) The protocol version this client speaks."""
    PROTOCOL_VERSION = "1.1.0"


class ResponseStatusCode(WireEnum):
    """(Internal) A response's status (spec 2.6)."""
    Success = 0
    UnknownFailure = 1
    Unauthorized = 2
    InvalidRequest = 3
    RequestPayloadTooLarge = 4
    ResourceNotFound = 5
    ServerTimeout = 6
    ResponsePayloadTooLarge = 7
    UnsupportedConnectVersion = 8
    UnexpectedOperation = 9
    UnsupportedProtocolVersion = 10
    InvalidProtocolVersion = 11
    FailedToConnect = 12
    NotEnoughMessages = 13
    MessageStoreReadError = 14
    OutOfMemoryError = 15
    UpdateFailed = 16
    UpdateNotAllowed = 17
    UnknownOperation = 18


class Operation(WireEnum):
    """(Internal) A frame's operation code (spec 2.3)."""
    Unknown = 0
    Connect = 1
    CreateMessageStream = 2
    DeleteMessageStream = 3
    AppendMessage = 4
    ReadMessages = 5
    ConnectResponse = 6
    CreateMessageStreamResponse = 7
    DeleteMessageStreamResponse = 8
    AppendMessageResponse = 9
    ReadMessagesResponse = 10
    ListStreams = 11
    ListStreamsResponse = 12
    DescribeMessageStream = 13
    DescribeMessageStreamResponse = 14
    UpdateMessageStream = 15
    UpdateMessageStreamResponse = 16
    UnknownOperationError = 17


class Status(WireEnum):
    """The status of an event in a status stream."""
    Success = 0
    Failure = 1
    InProgress = 2
    Warning = 3
    Canceled = 4


class StatusLevel(WireEnum):
    """The verbosity of a status stream."""
    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3
    TRACE = 4


class EventType(WireEnum):
    """What a status message is about."""
    S3Task = 0


class ExportFormat(WireEnum):
    """How an HTTP export batches: RAW_NOT_BATCHED posts each payload as a
    body; JSON_BATCHED posts a JSON list of Message objects per batch."""
    RAW_NOT_BATCHED = 0
    JSON_BATCHED = 1


class StrategyOnFull(WireEnum):
    """What an append to a full stream does: RejectNewData fails it;
    OverwriteOldestData drops the oldest segments."""
    RejectNewData = 0
    OverwriteOldestData = 1


class Persistence(WireEnum):
    """File survives restarts; Memory never touches the disk."""
    File = 0
    Memory = 1


class Quality(WireEnum):
    """The quality of a SiteWise asset property value."""
    GOOD = "GOOD"
    BAD = "BAD"
    UNCERTAIN = "UNCERTAIN"


# --- internal framing and handshake -------------------------------------

class ConnectRequest(Model):
    """(Internal) The first frame a client sends."""
    _fields = (
        _request_id(),
        Field('protocol_version', str, required=True),
        Field('other_supported_protocol_versions', list_of=str),
        Field('sdk_version', str),
        Field('auth_token', str),
    )


class ConnectResponse(Model):
    """(Internal) The server's answer to ConnectRequest."""
    _fields = (
        _request_id(required=False),
        Field('status', ResponseStatusCode, required=True),
        Field('error_message', str),
        Field('protocol_version', str),
        Field('supported_protocol_versions', list_of=str),
        Field('server_version', str),
        Field('client_identifier', str),
    )


class MessageFrame(Model):
    """(Internal) One frame: an operation and its CBOR payload."""
    _fields = (
        Field('operation', Operation, required=True),
        Field('payload', bytes, required=True),
    )


# --- S3 export tasks and status streams ---------------------------------

class S3ExportTaskDefinition(Model):
    """What to upload to S3: the local file (input_url, a file:// URL), the
    bucket and the key (which may hold !{timestamp:<Java DateTimeFormatter
    pattern>} placeholders), and optional user metadata. Appended to an S3
    export stream as JSON (Util.validate_and_serialize_to_json_bytes)."""
    _fields = (
        Field('input_url', str, required=True),
        Field('bucket', str, required=True, minLength=3, maxLength=63, pattern=_S3_BUCKET),
        Field('key', str, required=True, minLength=1, maxLength=1024, pattern=_S3_KEY),
        Field('user_metadata', dict),
    )


class StatusContext(Model):
    """Which stream, export and message a status message is about."""
    _fields = (
        Field('s3_export_task_definition', S3ExportTaskDefinition),
        Field('export_identifier', str),
        Field('stream_name', str),
        Field('sequence_number', int),
    )


class StatusMessage(Model):
    """A status, as appended to a status stream (JSON)."""
    _fields = (
        Field('event_type', EventType, required=True),
        Field('status_level', StatusLevel),
        Field('status', Status, required=True),
        Field('status_context', StatusContext),
        Field('message', str),
        Field('timestamp_epoch_ms', int),
    )


class TraceableRequest(Model):
    """(Internal) A request with only a requestId."""
    _fields = (_request_id(),)


class UnknownOperationError(Model):
    """(Internal) The answer to an operation the server does not know."""
    _fields = (
        _request_id(),
        Field('status', ResponseStatusCode, required=True),
        Field('error_message', str),
    )


# --- export configurations ----------------------------------------------

class KinesisConfig(Model):
    """Export to a Kinesis data stream (batch_size 1..500)."""
    _fields = (
        _identifier(),
        Field('kinesis_stream_name', str, required=True, minLength=1),
    ) + _export_common(500)


class IoTSiteWiseConfig(Model):
    """Export PutAssetPropertyValueEntry JSON payloads to IoT SiteWise
    (batch_size 1..10). Needs stream manager 1.1 (GGC 1.11)."""
    _fields = (_identifier(),) + _export_common(10)


class HTTPConfig(Model):
    """Export to an HTTP endpoint by POST (documented by AWS as not for
    production use)."""
    _fields = (
        _identifier(),
        Field('uri', str, required=True, minLength=1),
    ) + _export_common(500) + (
        Field('export_format', ExportFormat),
    )


class StatusConfig(Model):
    """Where an export reports its statuses, and how verbosely."""
    _fields = (
        Field('status_level', StatusLevel),
        Field('status_stream_name', str, minLength=1, maxLength=255, pattern=NAME_PATTERN),
    )


class S3ExportTaskExecutorConfig(Model):
    """Run S3ExportTaskDefinition payloads as uploads. Needs stream manager
    1.1 (GGC 1.11)."""
    _fields = (
        _identifier(),
        Field('size_threshold_for_multipart_upload_bytes', int, minimum=5242880),
        Field('priority', int, maximum=10, minimum=1),
        Field('disabled', bool),
        Field('status_config', StatusConfig),
    )


class IoTAnalyticsConfig(Model):
    """Export to an IoT Analytics channel (batch_size 1..100)."""
    _fields = (
        _identifier(),
        Field('iot_channel', str, required=True, minLength=1),
        Field('iot_msg_id_prefix', str, maxLength=32),
    ) + _export_common(100)


class ExportDefinition(Model):
    """Where a stream is exported: lists of configs per destination kind.
    On the wire the SiteWise list's key is "IotSitewise", as v1 sends it."""
    _fields = (
        Field('http', list_of=HTTPConfig),
        Field('iot_analytics', list_of=IoTAnalyticsConfig),
        Field('kinesis', list_of=KinesisConfig),
        Field('iot_sitewise', list_of=IoTSiteWiseConfig, key='IotSitewise'),
        Field('s3_task_executor', list_of=S3ExportTaskExecutorConfig),
    )


# --- streams --------------------------------------------------------------

class MessageStreamDefinition(Model):
    """A stream's definition, for create_message_stream and
    update_message_stream. strategy_on_full is required; max_size defaults
    to 256 MiB and stream_segment_size to 16 MiB, as in v1."""
    _fields = (
        _name(),
        Field('max_size', int, default=268435456, maximum=_INT64_MAX, minimum=1024),
        Field('stream_segment_size', int, default=16777216, maximum=_INT32_MAX, minimum=1024),
        Field('time_to_live_millis', int, maximum=_MILLIS_MAX, minimum=60000),
        Field('strategy_on_full', StrategyOnFull, required=True),
        Field('persistence', Persistence),
        Field('flush_on_write', bool),
        Field('export_definition', ExportDefinition),
    )


class CreateMessageStreamRequest(Model):
    _fields = (_request_id(), Field('definition', MessageStreamDefinition, required=True))


class UpdateMessageStreamRequest(Model):
    _fields = (_request_id(), Field('definition', MessageStreamDefinition, required=True))


class DeleteMessageStreamRequest(Model):
    _fields = (_request_id(), _name())


class DescribeMessageStreamRequest(Model):
    _fields = (_request_id(), _name())


def _response(*extra):
    return (
        _request_id(),
        Field('status', ResponseStatusCode, required=True),
        Field('error_message', str),
    ) + extra


class CreateMessageStreamResponse(Model):
    _fields = _response()


class UpdateMessageStreamResponse(Model):
    _fields = _response()


class DeleteMessageStreamResponse(Model):
    _fields = _response()


class MessageStreamInfo(Model):
    """What describe_message_stream returns: the definition, the stored
    range (storage_status) and each export's progress (export_statuses)."""

    class storageStatus(Model):
        """The oldest and newest sequence numbers and the stream's bytes."""
        _fields = (
            Field('oldest_sequence_number', int),
            Field('newest_sequence_number', int),
            Field('total_bytes', int),
        )

    class exportStatuses(Model):
        """One export's progress; last_export_time is in epoch ms."""
        _fields = (
            Field('export_config_identifier', str),
            Field('last_exported_sequence_number', int, required=True),
            Field('last_export_time', int),
            Field('error_message', str),
            Field('exported_bytes_from_stream', int),
            Field('exported_messages_count', int),
        )

    _fields = (
        Field('definition', MessageStreamDefinition, required=True),
        Field('storage_status', storageStatus, required=True),
        Field('export_statuses', list_of=exportStatuses),
    )


class DescribeMessageStreamResponse(Model):
    _fields = _response(Field('message_stream_info', MessageStreamInfo))


class AppendMessageRequest(Model):
    _fields = (
        _request_id(),
        _name(),
        Field('payload', bytes, required=True, minLength=1),
    )


class AppendMessageResponse(Model):
    _fields = _response(Field('sequence_number', int))


class ReadMessagesOptions(Model):
    """Options of read_messages: where to start, how many messages at
    least (min_message_count, default 1) and at most, and how long the
    server may wait for them (read_timeout_millis, default 0: answer at
    once, NotEnoughMessagesException if fewer than the minimum are there;
    at most the client's request timeout)."""
    _fields = (
        Field('desired_start_sequence_number', int, maximum=_INT64_MAX, minimum=0),
        Field('min_message_count', int, default=1, maximum=_INT32_MAX, minimum=1),
        Field('max_message_count', int, maximum=_INT32_MAX, minimum=1),
        Field('read_timeout_millis', int, default=0, maximum=_MILLIS_MAX, minimum=0),
    )


class ReadMessagesRequest(Model):
    _fields = (
        _request_id(),
        _name('stream_name'),
        Field('read_messages_options', ReadMessagesOptions),
    )


class Message(Model):
    """A stored message: its stream, sequence number, ingest time (epoch
    ms) and payload."""
    _fields = (
        Field('stream_name', str, required=True),
        Field('sequence_number', int),
        Field('ingest_time', int),
        Field('payload', bytes, required=True),
    )


class ReadMessagesResponse(Model):
    _fields = (
        _request_id(required=False),
        Field('messages', list_of=Message),
        Field('status', ResponseStatusCode),
        Field('error_message', str),
    )


class ListStreamsRequest(Model):
    _fields = (_request_id(),)


class ListStreamsResponse(Model):
    _fields = _response(Field('streams', list_of=str))


# --- IoT SiteWise payloads ----------------------------------------------

class TimeInNanos(Model):
    """A timestamp: epoch seconds and a nanosecond offset."""
    _fields = (
        Field('time_in_seconds', int, required=True, maximum=31556889864403199, minimum=1),
        Field('offset_in_nanos', int, maximum=999999999, minimum=0),
    )


class Variant(Model):
    """An asset property value of one type."""
    _fields = (
        Field('string_value', str, minLength=1, maxLength=1024, pattern=_PRINTABLE),
        Field('integer_value', int, maximum=_INT32_MAX, minimum=0),
        Field('double_value', float),
        Field('boolean_value', bool),
    )


class AssetPropertyValue(Model):
    """A value, its timestamp and its quality."""
    _fields = (
        Field('value', Variant, required=True),
        Field('timestamp', TimeInNanos, required=True),
        Field('quality', Quality),
    )


class PutAssetPropertyValueEntry(Model):
    """One entry of SiteWise's BatchPutAssetPropertyValue: 1 to 10 values
    of the property named by asset_id and property_id, or property_alias.
    Appended to a SiteWise export stream as JSON."""
    _fields = (
        Field('entry_id', str, required=True, minLength=1, maxLength=64, pattern=r'^[a-zA-Z0-9_-]+$'),
        Field('asset_id', str),
        Field('property_id', str),
        Field('property_alias', str, minLength=1, maxLength=2048, pattern=_PRINTABLE),
        Field('property_values', list_of=AssetPropertyValue, required=True, maxItems=10, minItems=1),
    )
