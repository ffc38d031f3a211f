"""Reading secrets deployed with the group, through the core's
GGSecretManager pseudo-function (spec 1.8)."""
import json
import logging
from datetime import datetime

from greengrass_common import env_vars
from greengrasssdk import Lambda

customer_logger = logging.getLogger(__name__)
customer_logger.propagate = True

KEY_NAME_PAYLOAD = 'Payload'
KEY_NAME_STATUS = 'Status'
KEY_NAME_MESSAGE = 'Message'
KEY_NAME_SECRET_ID = 'SecretId'
KEY_NAME_VERSION_ID = 'VersionId'
KEY_NAME_VERSION_STAGE = 'VersionStage'
KEY_NAME_CREATED_DATE = 'CreatedDate'


class SecretsManagerError(Exception):
    pass


class Client:
    def __init__(self):
        self.lambda_client = Lambda.Client()

    def get_secret_value(self, **kwargs):
        """SecretId (required, name or ARN), VersionStage (default: the
        core uses AWSCURRENT). Returns ARN, Name, VersionId, SecretString
        and/or SecretBinary, VersionStages and CreatedDate (datetime)."""
        secret_id = kwargs.get(KEY_NAME_SECRET_ID)
        if not secret_id:
            raise ValueError('Parameter "SecretId" is required')
        if kwargs.get(KEY_NAME_VERSION_ID):
            raise ValueError('Query by VersionId is not yet supported')
        request = {KEY_NAME_SECRET_ID: secret_id}
        if kwargs.get(KEY_NAME_VERSION_STAGE):
            request[KEY_NAME_VERSION_STAGE] = kwargs[KEY_NAME_VERSION_STAGE]

        response = self.lambda_client.invoke(
            FunctionName=env_vars.SECRETS_MANAGER_FUNCTION_ARN,
            InvocationType='RequestResponse',
            Payload=json.dumps(request).encode('utf-8'))
        body = response[KEY_NAME_PAYLOAD]
        data = body.read() if hasattr(body, 'read') else body
        if response.get('FunctionError'):
            raise SecretsManagerError('Secrets manager returned function error {!r}: {}'.format(
                response['FunctionError'], data.decode('utf-8', 'replace')))
        try:
            doc = json.loads(data.decode('utf-8'))
        except ValueError:
            raise SecretsManagerError('Secrets manager returned a malformed answer: {!r}'.format(data))
        if not isinstance(doc, dict):
            raise SecretsManagerError('Secrets manager returned a malformed answer: {!r}'.format(data))
        if KEY_NAME_STATUS in doc and KEY_NAME_MESSAGE in doc:
            raise SecretsManagerError('Request for secret value returned error code {} with message {}'.format(
                doc[KEY_NAME_STATUS], doc[KEY_NAME_MESSAGE]))
        if isinstance(doc.get(KEY_NAME_CREATED_DATE), (int, float)):
            doc[KEY_NAME_CREATED_DATE] = datetime.fromtimestamp(doc[KEY_NAME_CREATED_DATE] / 1000)
        return doc
