"""Core-side Python library shared by the Lambda runtime and the Greengrass
Core SDK (greengrasssdk): environment, function ARNs and the local log sink.

Evergreen ships this package in place of the Greengrass v1 core's own copy;
module, class and function names follow what user SDKs import.
"""
