"""The v1 stream manager client (spec 2), as provided by Evergreen for
functions that do not bundle their own greengrasssdk; standard library
only (the v1 SDK needed cbor2).

    from greengrasssdk.stream_manager import (
        StreamManagerClient, MessageStreamDefinition, StrategyOnFull, ReadMessagesOptions)

    client = StreamManagerClient()
    client.create_message_stream(MessageStreamDefinition(
        name='readings', strategy_on_full=StrategyOnFull.OverwriteOldestData))
    seq = client.append_message('readings', b'21.5')
    msgs = client.read_messages('readings', ReadMessagesOptions(desired_start_sequence_number=seq))
"""
# flake8: noqa
from .streammanagerclient import StreamManagerClient, SDK_VERSION
from .exceptions import *
from .util import Util
from .data import (
    ReadMessagesOptions,
    MessageStreamDefinition,
    MessageStreamInfo,
    Message,
    ExportDefinition,
    StrategyOnFull,
    Persistence,
    HTTPConfig,
    IoTAnalyticsConfig,
    KinesisConfig,
    ExportFormat,
    StatusConfig,
    StatusContext,
    StatusLevel,
    EventType,
    Status,
    StatusMessage,
    S3ExportTaskExecutorConfig,
    S3ExportTaskDefinition,
    IoTSiteWiseConfig,
    Variant,
    Quality,
    TimeInNanos,
    AssetPropertyValue,
    PutAssetPropertyValueEntry,
)
