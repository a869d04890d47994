"""The client shims: endpoint redirect and fast polling (real botocore/SDK modules, no patches)."""

import os
import time
import types

from smlocal import compat


def test_explicit_aws_endpoints_go_to_smlocal(monkeypatch):
    import botocore.session

    monkeypatch.setenv("SMLOCAL_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    compat.install()
    session = botocore.session.get_session()
    sts = session.create_client("sts", region_name="us-east-1", endpoint_url="https://sts.us-east-1.amazonaws.com",
                                aws_access_key_id="a", aws_secret_access_key="b")
    assert sts.meta.endpoint_url == "http://127.0.0.1:1"
    other = session.create_client("sts", region_name="us-east-1", endpoint_url="http://example.test:9",
                                  aws_access_key_id="a", aws_secret_access_key="b")
    assert other.meta.endpoint_url == "http://example.test:9"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    s3 = session.create_client("s3", region_name="us-east-1", endpoint_url="https://s3.amazonaws.com",
                               aws_access_key_id="a", aws_secret_access_key="b")
    assert s3.meta.endpoint_url == "http://127.0.0.1:2"


def test_fast_polling_caps_sleep_and_advances_the_module_clock(monkeypatch):
    monkeypatch.setenv("SMLOCAL_POLL_SECONDS", "0.01")
    module = types.ModuleType("fake_poller")
    module.time = time
    compat.patch_polling(module)
    assert module.time is not time
    before_virtual, before_real = module.time.time(), time.time()
    started = time.perf_counter()
    module.time.sleep(30)
    assert time.perf_counter() - started < 5
    assert module.time.time() - before_virtual >= 30
    assert time.time() - before_real < 5  # the real clock is untouched
    assert module.time.strftime("%Y") == time.strftime("%Y")


def test_sdk_session_module_is_patched_after_install(monkeypatch):
    monkeypatch.setenv("SMLOCAL_ENDPOINT", "http://127.0.0.1:1")
    compat.install()
    import sagemaker.session

    assert isinstance(sagemaker.session.time, compat._FastTime)
    assert os.environ["SMLOCAL_ENDPOINT"] == "http://127.0.0.1:1"


def test_fast_waiter_config_keeps_botocore_budget():
    # botocore waits Delay * (MaxAttempts - 1) before its last attempt; polling every 0.2 s fills it
    assert compat.fast_waiter_config(540, 3, 0.2) == {"Delay": 0.2, "MaxAttempts": 5401}
    assert compat.fast_waiter_config(1, 2, 0.2) == {"Delay": 0.2, "MaxAttempts": 6}
    assert compat.fast_waiter_config(0.1, 5, 0.2) == {"Delay": 0.1, "MaxAttempts": 5}  # already fast
    assert compat.fast_waiter_config(30, 1, 0.2) == {"Delay": 30.0, "MaxAttempts": 1}  # one attempt, no wait


def test_real_timeout_on_a_skipping_clock_passes_in_real_time(monkeypatch):
    monkeypatch.setenv("SMLOCAL_POLL_SECONDS", "0.01")
    module = types.ModuleType("fake_tailer")
    module.time = time
    compat.patch_polling(module)
    timeout = compat.RealTimeout(0.5)
    end = module.time.time() + timeout
    module.time.sleep(30)  # the clock skips 30 s ahead, the deadline has not passed
    assert not module.time.time() > end
    time.sleep(0.6)
    assert module.time.time() > end
    assert "Timeout Exceeded. {} seconds elapsed.".format(compat.RealTimeout(60)) == "Timeout Exceeded. 60 seconds elapsed."
