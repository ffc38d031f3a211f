# Reports what a GreengrassContainer function can do with the paths the
# event names: write a file in each volume, read the one the test put in
# the read-only volume, read the device, see or write a host path.
import os


def attempt(fn):
    try:
        return fn()
    except OSError as e:
        return 'errno {}'.format(e.errno)


def write(path):
    with open(path, 'w') as f:
        f.write('from the function')
    return 'written'


def read(path, n=None):
    with open(path, 'rb') as f:
        return f.read(n).decode('latin-1')


def handler(event, context):
    return {
        'uid': os.getuid(),
        'groups': sorted(os.getgroups()),
        'rwWrite': attempt(lambda: write(event['rw'] + '/new')),
        'roWrite': attempt(lambda: write(event['ro'] + '/new')),
        'roRead': attempt(lambda: read(event['ro'] + '/existing')),
        'device': attempt(lambda: len(read(event['device'], 8))),
        'undeclaredSeen': os.path.exists(event['undeclared']),
        'undeclaredWrite': attempt(lambda: write(event['undeclared'] + '/new')),
    }
