"""The shared log handler for core-library and SDK-internal messages.

local_cloudwatch_handler posts to the runtime's system log group
(/GreengrassSystem/python_runtime); user code logs through the root logger,
which lambda_runtime.py routes to the function's own group.
"""
from greengrass_common.local_cloudwatch_handler import (
    GreengrassFormatter, LocalCloudwatchLogHandler, LOG_FORMAT)

local_cloudwatch_handler = LocalCloudwatchLogHandler('GreengrassSystem', 'python_runtime')
