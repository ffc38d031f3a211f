# Logs one line per level through the standard logging module, as v1
# functions do; the core forwards them under the Lambda loggers.
import logging

log = logging.getLogger(__name__)


def handler(event, context):
    n = event.get('n')
    log.info('lambda-info-%s', n)
    log.warning('lambda-warn-%s', n)
    return {'logged': n}
