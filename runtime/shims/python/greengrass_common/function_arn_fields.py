"""Parsing and building of Lambda function ARNs.

Besides ordinary ARNs (arn:aws:lambda:us-east-1:123456789012:function:Name:3)
the core addresses its pseudo-functions with region- and account-less ARNs
such as arn:aws:lambda:::function:GGRouter, so both parts may be empty.
"""
import re

_ARN = re.compile(
    r'^arn:(?P<partition>aws[a-zA-Z-]*):lambda:'
    r'(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+|):'
    r'(?P<account>\d{12}|):function:'
    r'(?P<name>[a-zA-Z0-9_-]+)'
    r'(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$')


class FunctionArnFields:
    """The parts of a function ARN; raises ValueError if arn is not one."""

    def __init__(self, function_arn):
        m = _ARN.match(function_arn or '')
        if m is None:
            raise ValueError('Cannot parse given string as a function ARN: {}'.format(function_arn))
        self.arn = function_arn
        self.partition = m.group('partition')
        self.region = m.group('region')
        self.account_id = m.group('account')
        self.name = m.group('name')
        self.qualifier = m.group('qualifier')
        self.unqualified_arn = FunctionArnFields.build_arn_string(
            self.region, self.account_id, self.name, partition=self.partition)

    @staticmethod
    def build_arn_string(region, account_id, name, qualifier=None, partition='aws'):
        arn = 'arn:{}:lambda:{}:{}:function:{}'.format(partition, region or '', account_id or '', name)
        return FunctionArnFields.build_function_arn(arn, qualifier)

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        if qualifier:
            return '{}:{}'.format(unqualified_arn, qualifier)
        return unqualified_arn

    def __repr__(self):
        return 'FunctionArnFields({!r})'.format(self.arn)
