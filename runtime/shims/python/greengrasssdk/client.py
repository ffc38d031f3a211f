def client(client_type, *args, **kwargs):
    """Returns the client for 'lambda', 'iot-data' or 'secretsmanager'."""
    if client_type == 'lambda':
        from .Lambda import Client
    elif client_type == 'iot-data':
        from .IoTDataPlane import Client
    elif client_type == 'secretsmanager':
        from .SecretsManager import Client
    elif client_type == 'streammanager':
        # As in v1's SDK, the stream manager is not a client() type.
        raise Exception("Client type 'streammanager' is not recognized; use "
                        "greengrasssdk.stream_manager.StreamManagerClient() instead.")
    else:
        raise Exception('Client type {!r} is not recognized.'.format(client_type))
    return Client(*args, **kwargs)
