"""greengrasssdk.stream_manager's data classes, Util and exceptions: v1's
names, constructor keywords, defaults, properties, wire keys, validation
and the JSON of spec 2.5."""
import inspect
import json
import unittest

import support  # noqa: F401 (puts the shims on sys.path)
import greengrasssdk.stream_manager as sm
from greengrasssdk.stream_manager import (
    AssetPropertyValue, EventType, ExportDefinition, ExportFormat, HTTPConfig, IoTAnalyticsConfig,
    IoTSiteWiseConfig, KinesisConfig, Message, MessageStreamDefinition, MessageStreamInfo, Persistence,
    PutAssetPropertyValueEntry, Quality, ReadMessagesOptions, S3ExportTaskDefinition, S3ExportTaskExecutorConfig,
    Status, StatusConfig, StatusContext, StatusLevel, StatusMessage, StrategyOnFull, TimeInNanos, Util, Variant)
from greengrasssdk.stream_manager import data, exceptions
from greengrasssdk.stream_manager.model import invalid


def sitewise_entry():
    return PutAssetPropertyValueEntry(
        entry_id='entry-1', asset_id='a1b2', property_id='p3c4',
        property_values=[
            AssetPropertyValue(value=Variant(double_value=21.5),
                               timestamp=TimeInNanos(time_in_seconds=1700000000, offset_in_nanos=250),
                               quality=Quality.GOOD),
            AssetPropertyValue(value=Variant(boolean_value=True), timestamp=TimeInNanos(time_in_seconds=1700000001)),
        ])


class PublicNamesTest(unittest.TestCase):
    def test_v1_names_are_exported(self):
        for name in ('StreamManagerClient', 'SDK_VERSION', 'Util', 'ReadMessagesOptions', 'MessageStreamDefinition',
                     'ExportDefinition', 'StrategyOnFull', 'Persistence', 'HTTPConfig', 'IoTAnalyticsConfig',
                     'KinesisConfig', 'ExportFormat', 'StatusConfig', 'StatusContext', 'StatusLevel', 'EventType',
                     'Status', 'StatusMessage', 'S3ExportTaskExecutorConfig', 'S3ExportTaskDefinition',
                     'IoTSiteWiseConfig', 'Variant', 'Quality', 'TimeInNanos', 'AssetPropertyValue',
                     'PutAssetPropertyValueEntry', 'Message', 'MessageStreamInfo',
                     'StreamManagerException', 'ClientException', 'ValidationException', 'ConnectFailedException',
                     'InvalidRequestException', 'RequestPayloadTooLargeException', 'ResourceNotFoundException',
                     'ResponsePayloadTooLargeException', 'ServerTimeoutException', 'UnauthorizedException',
                     'UnknownFailureException', 'NotEnoughMessagesException', 'MessageStoreReadErrorException',
                     'ServerOutOfMemoryException', 'UpdateFailedException', 'UnknownOperationException',
                     'UpdateNotAllowedException'):
            self.assertTrue(hasattr(sm, name), name)
        self.assertEqual(sm.SDK_VERSION, '1.1.1')
        self.assertEqual(data.VersionInfo.PROTOCOL_VERSION.value, '1.1.0')

    def test_exception_hierarchy(self):
        e = exceptions
        for cls in (e.InvalidRequestException, e.RequestPayloadTooLargeException, e.ResourceNotFoundException,
                    e.ResponsePayloadTooLargeException, e.ServerTimeoutException, e.UnauthorizedException,
                    e.UnknownFailureException, e.NotEnoughMessagesException, e.MessageStoreReadErrorException,
                    e.ServerOutOfMemoryException, e.UpdateFailedException, e.UnknownOperationException):
            self.assertIs(cls.__bases__[0], e.StreamManagerException, cls)
        self.assertTrue(issubclass(e.UpdateNotAllowedException, e.InvalidRequestException))
        self.assertTrue(issubclass(e.ValidationException, e.ClientException))
        self.assertTrue(issubclass(e.ConnectFailedException, e.ClientException))
        self.assertTrue(issubclass(e.ClientException, e.StreamManagerException))
        x = e.ResourceNotFoundException('no such stream', data.ResponseStatusCode.ResourceNotFound, 'r-1')
        self.assertEqual((str(x), x.message, x.status, x.request_id),
                         ('no such stream', 'no such stream', data.ResponseStatusCode.ResourceNotFound, 'r-1'))
        self.assertEqual((e.StreamManagerException().message, e.StreamManagerException().status), ('', None))

    def test_enum_values(self):
        self.assertEqual([(m.name, m.value) for m in StrategyOnFull], [('RejectNewData', 0), ('OverwriteOldestData', 1)])
        self.assertEqual([(m.name, m.value) for m in Persistence], [('File', 0), ('Memory', 1)])
        self.assertEqual([(m.name, m.value) for m in ExportFormat], [('RAW_NOT_BATCHED', 0), ('JSON_BATCHED', 1)])
        self.assertEqual([m.value for m in StatusLevel], [0, 1, 2, 3, 4])
        self.assertEqual([m.name for m in StatusLevel], ['ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'])
        self.assertEqual([(m.name, m.value) for m in Status],
                         [('Success', 0), ('Failure', 1), ('InProgress', 2), ('Warning', 3), ('Canceled', 4)])
        self.assertEqual([(m.name, m.value) for m in EventType], [('S3Task', 0)])
        self.assertEqual([m.value for m in Quality], ['GOOD', 'BAD', 'UNCERTAIN'])
        self.assertEqual(len(data.ResponseStatusCode), 19)
        self.assertEqual(data.ResponseStatusCode(18), data.ResponseStatusCode.UnknownOperation)
        self.assertEqual(len(data.Operation), 18)
        self.assertEqual(data.Operation(17), data.Operation.UnknownOperationError)
        self.assertEqual(StrategyOnFull.from_dict(1), StrategyOnFull.OverwriteOldestData)
        self.assertEqual(Quality.BAD.as_dict(), 'BAD')
        self.assertEqual(repr(Persistence.Memory), "<Enum Persistence. 'Memory': 1>")


class ConstructorTest(unittest.TestCase):
    def test_keywords_and_defaults_are_v1s(self):
        want = {
            MessageStreamDefinition: [('name', None), ('max_size', 268435456), ('stream_segment_size', 16777216),
                                      ('time_to_live_millis', None), ('strategy_on_full', None),
                                      ('persistence', None), ('flush_on_write', None), ('export_definition', None)],
            ReadMessagesOptions: [('desired_start_sequence_number', None), ('min_message_count', 1),
                                  ('max_message_count', None), ('read_timeout_millis', 0)],
            ExportDefinition: [('http', None), ('iot_analytics', None), ('kinesis', None), ('iot_sitewise', None),
                               ('s3_task_executor', None)],
            HTTPConfig: [('identifier', None), ('uri', None), ('batch_size', None), ('batch_interval_millis', None),
                         ('priority', None), ('start_sequence_number', None), ('disabled', None),
                         ('export_format', None)],
            KinesisConfig: [('identifier', None), ('kinesis_stream_name', None), ('batch_size', None),
                            ('batch_interval_millis', None), ('priority', None), ('start_sequence_number', None),
                            ('disabled', None)],
            IoTAnalyticsConfig: [('identifier', None), ('iot_channel', None), ('iot_msg_id_prefix', None),
                                 ('batch_size', None), ('batch_interval_millis', None), ('priority', None),
                                 ('start_sequence_number', None), ('disabled', None)],
            IoTSiteWiseConfig: [('identifier', None), ('batch_size', None), ('batch_interval_millis', None),
                                ('priority', None), ('start_sequence_number', None), ('disabled', None)],
            S3ExportTaskExecutorConfig: [('identifier', None), ('size_threshold_for_multipart_upload_bytes', None),
                                         ('priority', None), ('disabled', None), ('status_config', None)],
            StatusConfig: [('status_level', None), ('status_stream_name', None)],
            S3ExportTaskDefinition: [('input_url', None), ('bucket', None), ('key', None), ('user_metadata', None)],
            StatusContext: [('s3_export_task_definition', None), ('export_identifier', None), ('stream_name', None),
                            ('sequence_number', None)],
            StatusMessage: [('event_type', None), ('status_level', None), ('status', None), ('status_context', None),
                            ('message', None), ('timestamp_epoch_ms', None)],
            Message: [('stream_name', None), ('sequence_number', None), ('ingest_time', None), ('payload', None)],
            MessageStreamInfo: [('definition', None), ('storage_status', None), ('export_statuses', None)],
            MessageStreamInfo.storageStatus: [('oldest_sequence_number', None), ('newest_sequence_number', None),
                                              ('total_bytes', None)],
            MessageStreamInfo.exportStatuses: [('export_config_identifier', None),
                                               ('last_exported_sequence_number', None), ('last_export_time', None),
                                               ('error_message', None), ('exported_bytes_from_stream', None),
                                               ('exported_messages_count', None)],
            TimeInNanos: [('time_in_seconds', None), ('offset_in_nanos', None)],
            Variant: [('string_value', None), ('integer_value', None), ('double_value', None),
                      ('boolean_value', None)],
            AssetPropertyValue: [('value', None), ('timestamp', None), ('quality', None)],
            PutAssetPropertyValueEntry: [('entry_id', None), ('asset_id', None), ('property_id', None),
                                         ('property_alias', None), ('property_values', None)],
        }
        for cls, params in want.items():
            with self.subTest(cls=cls.__qualname__):
                got = [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]
                self.assertEqual(got, params)
                obj = cls()
                self.assertEqual([(n, getattr(obj, n)) for n, _ in params], params)

    def test_positional_arguments_follow_v1s_order(self):
        d = MessageStreamDefinition('s', 2048, 1024, None, StrategyOnFull.RejectNewData)
        self.assertEqual((d.name, d.max_size, d.stream_segment_size, d.strategy_on_full),
                         ('s', 2048, 1024, StrategyOnFull.RejectNewData))
        with self.assertRaises(TypeError):
            MessageStreamDefinition('s', name='t')
        with self.assertRaises(TypeError):
            MessageStreamDefinition(nmae='s')
        with self.assertRaises(TypeError):
            TimeInNanos(1, 2, 3)

    def test_properties_getters_and_setters(self):
        d = MessageStreamDefinition(name='s', strategy_on_full=StrategyOnFull.RejectNewData)
        d.time_to_live_millis = 60000
        d._set_flush_on_write(True)
        self.assertEqual((d._get_time_to_live_millis(), d.flush_on_write), (60000, True))
        d.time_to_live_millis = None  # optional: None clears it
        with self.assertRaisesRegex(TypeError, '^name must be str$'):
            d.name = 5
        with self.assertRaisesRegex(TypeError, '^name must be str$'):
            d.name = None  # required
        with self.assertRaisesRegex(TypeError, '^strategy_on_full must be StrategyOnFull$'):
            d.strategy_on_full = 1
        e = ExportDefinition()
        with self.assertRaisesRegex(TypeError, '^http must be list$'):
            e.http = HTTPConfig()
        with self.assertRaisesRegex(TypeError, '^http list values must be HTTPConfig$'):
            e.http = [KinesisConfig()]
        info = MessageStreamInfo()
        with self.assertRaisesRegex(TypeError, '^storage_status must be MessageStreamInfo.storageStatus$'):
            info.storage_status = 1
        with self.assertRaises(AttributeError):
            d.nmae = 's'  # __slots__: a misspelt attribute fails, as in v1

    def test_repr(self):
        self.assertEqual(repr(TimeInNanos(time_in_seconds=5)),
                         '<Class TimeInNanos. time_in_seconds: 5, offset_in_nanos: None>')
        self.assertTrue(repr(Message(payload=b'x' * 100)).startswith(
            "<Class Message. stream_name: None, sequence_number: None, ingest_time: None, payload: b'xxxx"))


class WireFormTest(unittest.TestCase):
    def test_definition_as_dict_has_camel_case_keys_and_enum_values(self):
        d = MessageStreamDefinition(
            name='readings', time_to_live_millis=3600000, strategy_on_full=StrategyOnFull.OverwriteOldestData,
            persistence=Persistence.Memory, flush_on_write=False,
            export_definition=ExportDefinition(
                http=[HTTPConfig(identifier='web', uri='http://127.0.0.1:8080/in', batch_size=10,
                                 batch_interval_millis=60000, priority=1, start_sequence_number=0, disabled=False,
                                 export_format=ExportFormat.RAW_NOT_BATCHED)],
                iot_analytics=[IoTAnalyticsConfig(identifier='ia', iot_channel='ch', iot_msg_id_prefix='p')],
                kinesis=[KinesisConfig(identifier='k', kinesis_stream_name='ks')],
                iot_sitewise=[IoTSiteWiseConfig(identifier='sw', batch_size=10)],
                s3_task_executor=[S3ExportTaskExecutorConfig(
                    identifier='s3', size_threshold_for_multipart_upload_bytes=5242880,
                    status_config=StatusConfig(status_level=StatusLevel.INFO, status_stream_name='status'))]))
        want = {
            'name': 'readings', 'maxSize': 268435456, 'streamSegmentSize': 16777216, 'timeToLiveMillis': 3600000,
            'strategyOnFull': 1, 'persistence': 1, 'flushOnWrite': False,
            'exportDefinition': {
                'http': [{'identifier': 'web', 'uri': 'http://127.0.0.1:8080/in', 'batchSize': 10,
                          'batchIntervalMillis': 60000, 'priority': 1, 'startSequenceNumber': 0, 'disabled': False,
                          'exportFormat': 0}],
                'iotAnalytics': [{'identifier': 'ia', 'iotChannel': 'ch', 'iotMsgIdPrefix': 'p'}],
                'kinesis': [{'identifier': 'k', 'kinesisStreamName': 'ks'}],
                'IotSitewise': [{'identifier': 'sw', 'batchSize': 10}],
                's3TaskExecutor': [{'identifier': 's3', 'sizeThresholdForMultipartUploadBytes': 5242880,
                                    'statusConfig': {'statusLevel': 2, 'statusStreamName': 'status'}}],
            },
        }
        self.assertEqual(d.as_dict(), want)
        self.assertEqual(list(d.as_dict()), list(want))  # v1's key order
        self.assertIsNone(invalid(d))
        back = MessageStreamDefinition.from_dict(want)
        self.assertEqual(back.as_dict(), want)
        self.assertIs(back.persistence, Persistence.Memory)
        self.assertIsInstance(back.export_definition.s3_task_executor[0].status_config, StatusConfig)
        self.assertIs(back.export_definition.http[0].export_format, ExportFormat.RAW_NOT_BATCHED)

    def test_from_dict_ignores_unknown_keys(self):
        d = ExportDefinition.from_dict({'http': [], 'jetstream': [{'identifier': 'js'}]})
        self.assertEqual(d.as_dict(), {'http': []})

    def test_message_stream_info_from_a_describe_response(self):
        info = MessageStreamInfo.from_dict({
            'definition': {'name': 's', 'maxSize': 1024, 'streamSegmentSize': 1024, 'strategyOnFull': 0,
                           'persistence': 0, 'flushOnWrite': True},
            'storageStatus': {'oldestSequenceNumber': 3, 'newestSequenceNumber': 9, 'totalBytes': 70},
            'exportStatuses': [{'exportConfigIdentifier': 'web', 'lastExportedSequenceNumber': 8,
                                'lastExportTime': 1700000000000, 'exportedBytesFromStream': 60,
                                'exportedMessagesCount': 6}],
        })
        self.assertIsInstance(info.storage_status, MessageStreamInfo.storageStatus)
        self.assertEqual((info.definition.name, info.definition.strategy_on_full, info.storage_status.newest_sequence_number,
                          info.storage_status.total_bytes), ('s', StrategyOnFull.RejectNewData, 9, 70))
        es = info.export_statuses[0]
        self.assertIsInstance(es, MessageStreamInfo.exportStatuses)
        self.assertEqual((es.export_config_identifier, es.last_exported_sequence_number, es.last_export_time,
                          es.error_message, es.exported_messages_count), ('web', 8, 1700000000000, None, 6))

    def test_message_from_dict(self):
        m = Message.from_dict({'streamName': 's', 'sequenceNumber': 4, 'ingestTime': 1700000000000,
                               'payload': bytearray(b'hi')})
        self.assertEqual((m.stream_name, m.sequence_number, m.ingest_time, m.payload), ('s', 4, 1700000000000, b'hi'))
        self.assertIsInstance(m.payload, bytes)


class ValidationTest(unittest.TestCase):
    def definition(self, **kw):
        args = dict(name='s', strategy_on_full=StrategyOnFull.RejectNewData)
        args.update(kw)
        return MessageStreamDefinition(**args)

    def test_messages_name_the_problem(self):
        cases = [
            (self.definition(name='a/b'), r'Property name must match regex ^[\w ,.\-_]*$'),
            (self.definition(name=''), 'Property name must have a minimum length of 1, but found length of 0'),
            (self.definition(name='n' * 256), 'Property name must have a maximum length of 255, but found length of 256'),
            (self.definition(strategy_on_full=None), 'Property strategy_on_full is required, but was None'),
            (self.definition(strategy_on_full=0),
             'Property strategy_on_full is invalid because it must be of type StrategyOnFull'),
            (self.definition(max_size=1023), 'Property max_size must be at least 1024'),
            (self.definition(stream_segment_size=2 ** 31), 'Property stream_segment_size must be at most 2147483647'),
            (self.definition(time_to_live_millis=59999), 'Property time_to_live_millis must be at least 60000'),
            (self.definition(export_definition=ExportDefinition(http=[HTTPConfig(identifier='h', uri='u', batch_size=501)])),
             'Property export_definition is invalid because Property http[0] is invalid because '
             'Property batch_size must be at most 500'),
            (self.definition(export_definition=ExportDefinition(kinesis=[HTTPConfig()])),
             'Property export_definition is invalid because Property kinesis[0] is invalid because '
             'it must be of type KinesisConfig'),
            (self.definition(export_definition=ExportDefinition(iot_sitewise=[IoTSiteWiseConfig(identifier='s', batch_size=11)])),
             'Property export_definition is invalid because Property iot_sitewise[0] is invalid because '
             'Property batch_size must be at most 10'),
            (ReadMessagesOptions(min_message_count=0), 'Property min_message_count must be at least 1'),
            (ReadMessagesOptions(read_timeout_millis=-1), 'Property read_timeout_millis must be at least 0'),
            (IoTAnalyticsConfig(identifier='i', iot_channel='c', iot_msg_id_prefix='p' * 33),
             'Property iot_msg_id_prefix must have a maximum length of 32, but found length of 33'),
            (S3ExportTaskExecutorConfig(identifier='s', size_threshold_for_multipart_upload_bytes=5242879),
             'Property size_threshold_for_multipart_upload_bytes must be at least 5242880'),
            (KinesisConfig(identifier='k'), 'Property kinesis_stream_name is required, but was None'),
            (HTTPConfig(identifier='h', uri='u', priority=11), 'Property priority must be at most 10'),
            (HTTPConfig(identifier='h', uri='u', batch_interval_millis=1000),
             'Property batch_interval_millis must be at least 60000'),
            (data.AppendMessageRequest(request_id='r', name='s', payload=b''),
             'Property payload must have a minimum length of 1, but found length of 0'),
            (data.AppendMessageRequest(request_id='r', name='s', payload='text'),
             'Property payload is invalid because it must be of type bytes'),
        ]
        for obj, message in cases:
            with self.subTest(message=message):
                self.assertEqual(invalid(obj), message)

    def test_valid_objects_pass(self):
        for obj in (self.definition(), self.definition(name='Name with spaces, dots. and-dashes_1'),
                    ReadMessagesOptions(), sitewise_entry(),
                    self.definition(max_size=2 ** 63 - 1, time_to_live_millis=9223372036854)):
            self.assertIsNone(invalid(obj), obj)


class UtilJSONTest(unittest.TestCase):
    """The JSON payloads of S3 and SiteWise export streams (spec 2.5)."""

    def test_s3_export_task_definition(self):
        task = S3ExportTaskDefinition(input_url='file:///var/data/export.csv', bucket='my-bucket',
                                      key='readings/!{timestamp:yyyy/MM/dd}/export.csv',
                                      user_metadata={'owner': 'line-3'})
        self.assertEqual(Util.validate_and_serialize_to_json_bytes(task),
                         b'{"inputUrl": "file:///var/data/export.csv", "bucket": "my-bucket", '
                         b'"key": "readings/!{timestamp:yyyy/MM/dd}/export.csv", "userMetadata": {"owner": "line-3"}}')
        minimal = S3ExportTaskDefinition(input_url='file:///a', bucket='b12', key='k')
        self.assertEqual(Util.validate_and_serialize_to_json_bytes(minimal),
                         b'{"inputUrl": "file:///a", "bucket": "b12", "key": "k"}')
        back = Util.deserialize_json_bytes_to_obj(Util.validate_and_serialize_to_json_bytes(task), S3ExportTaskDefinition)
        self.assertEqual(back.as_dict(), task.as_dict())

    def test_s3_export_task_definition_is_validated(self):
        for task, message in (
                (S3ExportTaskDefinition(input_url='file:///a', bucket='My_Bucket', key='k'), 'Property bucket must match'),
                (S3ExportTaskDefinition(input_url='file:///a', bucket='192.168.0.1', key='k'), 'Property bucket must match'),
                (S3ExportTaskDefinition(input_url='file:///a', bucket='ab', key='k'),
                 'Property bucket must have a minimum length of 3'),
                (S3ExportTaskDefinition(input_url='file:///a', bucket='bucket', key='a key'), 'Property key must match'),
                (S3ExportTaskDefinition(input_url='file:///a', bucket='bucket', key='a{b'), 'Property key must match'),
                (S3ExportTaskDefinition(bucket='bucket', key='k'), 'Property input_url is required')):
            with self.subTest(message=message):
                with self.assertRaisesRegex(exceptions.ValidationException, '^' + message):
                    Util.validate_and_serialize_to_json_bytes(task)

    def test_put_asset_property_value_entry(self):
        self.assertEqual(
            Util.validate_and_serialize_to_json_bytes(sitewise_entry()),
            b'{"entryId": "entry-1", "assetId": "a1b2", "propertyId": "p3c4", "propertyValues": ['
            b'{"value": {"doubleValue": 21.5}, "timestamp": {"timeInSeconds": 1700000000, "offsetInNanos": 250}, '
            b'"quality": "GOOD"}, '
            b'{"value": {"booleanValue": true}, "timestamp": {"timeInSeconds": 1700000001}}]}')
        by_alias = PutAssetPropertyValueEntry(
            entry_id='e_2', property_alias='/company/windfarm/3/turbine/7/temperature',
            property_values=[AssetPropertyValue(value=Variant(string_value='on'),
                                                timestamp=TimeInNanos(time_in_seconds=1), quality=Quality.UNCERTAIN),
                             AssetPropertyValue(value=Variant(integer_value=7), timestamp=TimeInNanos(time_in_seconds=2))])
        raw = Util.validate_and_serialize_to_json_bytes(by_alias)
        self.assertEqual(raw, b'{"entryId": "e_2", "propertyAlias": "/company/windfarm/3/turbine/7/temperature", '
                              b'"propertyValues": [{"value": {"stringValue": "on"}, "timestamp": {"timeInSeconds": 1}, '
                              b'"quality": "UNCERTAIN"}, {"value": {"integerValue": 7}, "timestamp": {"timeInSeconds": 2}}]}')
        back = Util.deserialize_json_bytes_to_obj(raw, PutAssetPropertyValueEntry)
        self.assertIs(back.property_values[0].quality, Quality.UNCERTAIN)
        self.assertIsInstance(back.property_values[1].timestamp, TimeInNanos)
        self.assertEqual(back.as_dict(), by_alias.as_dict())

    def test_put_asset_property_value_entry_is_validated(self):
        def entry(**kw):
            args = dict(entry_id='e', property_values=[
                AssetPropertyValue(value=Variant(integer_value=1), timestamp=TimeInNanos(time_in_seconds=1))])
            args.update(kw)
            return PutAssetPropertyValueEntry(**args)

        value = AssetPropertyValue(value=Variant(integer_value=1), timestamp=TimeInNanos(time_in_seconds=1))
        for obj, message in (
                (entry(entry_id='e 1'), 'Property entry_id must match regex'),
                (entry(entry_id='e' * 65), 'Property entry_id must have a maximum length of 64'),
                (entry(property_values=[]), 'Property property_values must have at least 1 items, but found 0'),
                (entry(property_values=[value] * 11), 'Property property_values must have at most 10 items, but found 11'),
                (entry(property_values=None), 'Property property_values is required, but was None'),
                (entry(property_alias='bad\x07alias'), 'Property property_alias must match regex'),
                (entry(property_values=[AssetPropertyValue(value=Variant(integer_value=-1),
                                                           timestamp=TimeInNanos(time_in_seconds=1))]),
                 'Property property_values\\[0\\] is invalid because Property value is invalid because '
                 'Property integer_value must be at least 0'),
                (entry(property_values=[AssetPropertyValue(value=Variant(double_value=1),
                                                           timestamp=TimeInNanos(time_in_seconds=1))]),
                 'Property property_values\\[0\\] is invalid because Property value is invalid because '
                 'Property double_value is invalid because it must be of type float'),
                (entry(property_values=[AssetPropertyValue(value=Variant(), timestamp=TimeInNanos(time_in_seconds=0))]),
                 'Property property_values\\[0\\] is invalid because Property timestamp is invalid because '
                 'Property time_in_seconds must be at least 1'),
                (entry(property_values=[AssetPropertyValue(value=Variant(string_value=''),
                                                           timestamp=TimeInNanos(time_in_seconds=1))]),
                 'Property property_values\\[0\\] is invalid because Property value is invalid because '
                 'Property string_value must have a minimum length of 1')):
            with self.subTest(message=message):
                with self.assertRaisesRegex(exceptions.ValidationException, '^' + message):
                    Util.validate_and_serialize_to_json_bytes(obj)

    def test_status_message(self):
        msg = StatusMessage(event_type=EventType.S3Task, status_level=StatusLevel.INFO, status=Status.Success,
                            status_context=StatusContext(
                                s3_export_task_definition=S3ExportTaskDefinition(
                                    input_url='file:///a.csv', bucket='bucket', key='k'),
                                export_identifier='s3', stream_name='tasks', sequence_number=4),
                            message='Upload succeeded', timestamp_epoch_ms=1700000000000)
        raw = Util.validate_and_serialize_to_json_bytes(msg)
        self.assertEqual(json.loads(raw), {
            'eventType': 0, 'statusLevel': 2, 'status': 0,
            'statusContext': {'s3ExportTaskDefinition': {'inputUrl': 'file:///a.csv', 'bucket': 'bucket', 'key': 'k'},
                              'exportIdentifier': 's3', 'streamName': 'tasks', 'sequenceNumber': 4},
            'message': 'Upload succeeded', 'timestampEpochMs': 1700000000000})
        # What a function reading a status stream does.
        back = Util.deserialize_json_bytes_to_obj(raw, StatusMessage)
        self.assertIs(back.status, Status.Success)
        self.assertEqual(back.status_context.s3_export_task_definition.input_url, 'file:///a.csv')

    def test_empty_lists_are_left_out(self):
        d = MessageStreamDefinition(name='s', strategy_on_full=StrategyOnFull.RejectNewData,
                                    export_definition=ExportDefinition(http=[], kinesis=[]))
        self.assertEqual(json.loads(Util.validate_and_serialize_to_json_bytes(d))['exportDefinition'], {})


if __name__ == '__main__':
    unittest.main()
