# Returns the environment its worker process was started with.
import os


def handler(event, context):
    return dict(os.environ)
