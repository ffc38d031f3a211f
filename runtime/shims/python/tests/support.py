"""Shared test setup: puts the shim packages on sys.path and gives the
in-process tests a function identity before greengrass_common reads it."""
import os
import sys

SHIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SHIM_DIR not in sys.path:
    sys.path.insert(0, SHIM_DIR)

TOKEN = 'Basic ZXZlcmdyZWVuOnRlc3Q='
MY_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:TestFn:7'

os.environ.setdefault('AWS_CONTAINER_AUTHORIZATION_TOKEN', TOKEN)
os.environ.setdefault('MY_FUNCTION_ARN', MY_ARN)
