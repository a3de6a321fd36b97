import unittest

from swell_worker import Identity, IdentityError

FULL = {"QWORKER_NAME": "qw", "HOSTNAME": "qw-1", "POD_NAMESPACE": "ns", "POD_SPEC_HASH": "h", "PULLING_INTERVAL": "2"}


class IdentityTest(unittest.TestCase):
    def test_reads_every_variable(self):
        i = Identity.from_env(FULL)
        self.assertEqual((i.qworker, i.pod, i.namespace, i.pod_spec_hash, i.pulling_interval), ("qw", "qw-1", "ns", "h", 2.0))

    def test_default_interval(self):
        env = dict(FULL)
        del env["PULLING_INTERVAL"]
        self.assertEqual(Identity.from_env(env).pulling_interval, 5.0)

    def test_missing_names_the_variable(self):
        for name in ("QWORKER_NAME", "HOSTNAME", "POD_SPEC_HASH"):
            env = dict(FULL)
            del env[name]
            with self.assertRaisesRegex(IdentityError, name):
                Identity.from_env(env)

    def test_stats_interval(self):
        self.assertEqual(Identity.from_env(FULL).stats_interval, 10.0)
        self.assertEqual(Identity.from_env(dict(FULL, SWELL_STATS_INTERVAL="2.5")).stats_interval, 2.5)
        for raw in ("0", "soon"):
            with self.assertRaisesRegex(IdentityError, "SWELL_STATS_INTERVAL"):
                Identity.from_env(dict(FULL, SWELL_STATS_INTERVAL=raw))

    def test_bad_interval(self):
        for raw in ("soon", "0", "-1"):
            with self.assertRaisesRegex(IdentityError, "PULLING_INTERVAL"):
                Identity.from_env(dict(FULL, PULLING_INTERVAL=raw))


if __name__ == "__main__":
    unittest.main()
