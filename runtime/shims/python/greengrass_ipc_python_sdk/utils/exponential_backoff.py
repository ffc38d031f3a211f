"""Retry with exponential backoff and full jitter."""
import functools
import random
import time


class BackoffGivenUp(Exception):
    pass


def retry(fn, retry_on=(Exception,), initial_delay=0.05, multiplier=2.0, max_delay=3.0,
          max_elapsed=None, sleep=time.sleep, on_retry=None):
    """Call fn() until it returns; on an exception in retry_on wait and try
    again. After max_elapsed seconds of failures the last error is raised."""
    delay = initial_delay
    started = time.monotonic()
    while True:
        try:
            return fn()
        except retry_on as e:
            if max_elapsed is not None and time.monotonic() - started >= max_elapsed:
                raise
            if on_retry is not None:
                on_retry(e, delay)
            sleep(random.uniform(delay / 2.0, delay))
            delay = min(delay * multiplier, max_delay)


def with_retry(**options):
    """Decorator form of retry()."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return retry(lambda: fn(*args, **kwargs), **options)
        return wrapper
    return decorate
