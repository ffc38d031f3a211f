"""Environment the core hands to every Lambda process (spec 1.1).

Values are read once at import, as user SDKs expect module constants. The
system function ARNs fall back to the fixed v1 names so that the SDK still
addresses the right pseudo-functions when a launcher omits them.
"""
import os

AUTH_TOKEN = os.environ.get('AWS_CONTAINER_AUTHORIZATION_TOKEN')
MY_FUNCTION_ARN = os.environ.get('MY_FUNCTION_ARN')
SHADOW_FUNCTION_ARN = os.environ.get('SHADOW_FUNCTION_ARN', 'arn:aws:lambda:::function:GGShadowService')
ROUTER_FUNCTION_ARN = os.environ.get('ROUTER_FUNCTION_ARN', 'arn:aws:lambda:::function:GGRouter')
SECRETS_MANAGER_FUNCTION_ARN = os.environ.get('SECRETS_MANAGER_FUNCTION_ARN',
                                              'arn:aws:lambda:::function:GGSecretManager:1')
GGC_MAX_INTERFACE_VERSION = os.environ.get('GGC_MAX_INTERFACE_VERSION')
GG_DAEMON_PORT = os.environ.get('GG_DAEMON_PORT', '8000')
ENCODING_TYPE = os.environ.get('ENCODING_TYPE')
AWS_IOT_THING_NAME = os.environ.get('AWS_IOT_THING_NAME')
AWS_CONTAINER_CREDENTIALS_FULL_URI = os.environ.get('AWS_CONTAINER_CREDENTIALS_FULL_URI')

# Evergreen extensions: the launcher passes the function's limits so the
# context object can answer get_remaining_time_in_millis and
# memory_limit_in_mb like AWS Lambda does.
FUNCTION_TIMEOUT_MS = os.environ.get('EVERGREEN_FUNCTION_TIMEOUT_MS')
FUNCTION_MEMORY_MB = os.environ.get('EVERGREEN_FUNCTION_MEMORY_MB')

ENCODING_TYPE_JSON = 'json'
ENCODING_TYPE_BINARY = 'binary'
