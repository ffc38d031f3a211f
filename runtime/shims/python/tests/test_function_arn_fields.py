import unittest

import support  # noqa: F401
from greengrass_common.function_arn_fields import FunctionArnFields


class FunctionArnFieldsTest(unittest.TestCase):
    def test_qualified_arn(self):
        f = FunctionArnFields('arn:aws:lambda:us-east-1:123456789012:function:Name:44')
        self.assertEqual((f.region, f.account_id, f.name, f.qualifier),
                         ('us-east-1', '123456789012', 'Name', '44'))
        self.assertEqual(f.unqualified_arn, 'arn:aws:lambda:us-east-1:123456789012:function:Name')

    def test_unqualified_and_latest(self):
        self.assertIsNone(FunctionArnFields('arn:aws:lambda:eu-west-1:123456789012:function:my-fn_2').qualifier)
        self.assertEqual(FunctionArnFields('arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST').qualifier,
                         '$LATEST')
        self.assertEqual(FunctionArnFields('arn:aws:lambda:us-west-2:123456789012:function:f:prod').qualifier, 'prod')

    def test_other_partitions(self):
        f = FunctionArnFields('arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f:1')
        self.assertEqual((f.region, f.name), ('us-gov-west-1', 'f'))
        self.assertEqual(f.unqualified_arn, 'arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f')

    def test_system_arns(self):
        router = FunctionArnFields('arn:aws:lambda:::function:GGRouter')
        self.assertEqual((router.region, router.account_id, router.name, router.qualifier),
                         ('', '', 'GGRouter', None))
        self.assertEqual(router.unqualified_arn, 'arn:aws:lambda:::function:GGRouter')
        secrets = FunctionArnFields('arn:aws:lambda:::function:GGSecretManager:1')
        self.assertEqual((secrets.name, secrets.qualifier), ('GGSecretManager', '1'))
        self.assertEqual(secrets.unqualified_arn, 'arn:aws:lambda:::function:GGSecretManager')

    def test_build(self):
        self.assertEqual(FunctionArnFields.build_function_arn('arn:aws:lambda:::function:GGSecretManager', '1'),
                         'arn:aws:lambda:::function:GGSecretManager:1')
        self.assertEqual(FunctionArnFields.build_function_arn('arn:aws:lambda:us-east-1:123456789012:function:f', None),
                         'arn:aws:lambda:us-east-1:123456789012:function:f')
        self.assertEqual(FunctionArnFields.build_arn_string('us-east-1', '123456789012', 'f', '3'),
                         'arn:aws:lambda:us-east-1:123456789012:function:f:3')

    def test_rejects_non_function_arns(self):
        for bad in ['', 'Name', 'arn:aws:lambda:us-east-1:123456789012:layer:x',
                    'arn:aws:lambda:us-east-1:1234:function:f', 'arn:aws:s3:::bucket',
                    'arn:aws:lambda:us-east-1:123456789012:function:f:1:2']:
            with self.assertRaises(ValueError, msg=bad):
                FunctionArnFields(bad)


if __name__ == '__main__':
    unittest.main()
