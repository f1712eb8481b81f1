"""A real ``moto_server`` (S3 emulator from ``moto[server]``) on 127.0.0.1, for tests and benchmarks.

In pytest, ask for the session fixture::

    def test_something(moto_server):
        bank = S3Bank(moto_server.bank_options(moto_server.new_bucket("demo")))

Outside pytest (functional tests, benchmarks)::

    from tests.servers.moto import start_moto_server
    server = start_moto_server()
    try:
        ...
    finally:
        server.stop()

The server listens on a port the kernel picks (``-p 0``; the port is read from its
log), is polled until it answers, and is stopped by PID (SIGTERM, then SIGKILL).
On Linux it also dies with the process that started it, so a killed test run leaves
nothing behind.  If it cannot start, the fixture skips the tests that need it,
except under ``CI=true`` where a missing server is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import dying_with_parent, must_not_skip, stop_process, tail_log

#: How long the server may take to answer after it is started.
START_TIMEOUT = 30.0
_RUNNING = re.compile(rb"Running on (https?://[0-9.]+:(\d+))")


class MotoServerError(RuntimeError):
    """moto_server could not be started."""


@dataclasses.dataclass
class MotoServer:
    """A running moto_server and what a test needs to talk S3 to it."""

    endpoint_url: str
    pid: int
    access_key: str = "strongroom-moto-access"
    secret_key: str = dataclasses.field(default="strongroom-moto-secret-0123456789", repr=False)
    region: str = "us-east-1"
    #: HTTPS with a self-signed certificate (``start_moto_server(tls=True)``): clients must not verify it.
    tls: bool = False
    #: Seconds from spawning the process to its first answer.
    start_seconds: float = 0.0
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    log_path: pathlib.Path | None = dataclasses.field(default=None, repr=False)

    def new_bucket(self, prefix: str = "test") -> str:
        """A fresh bucket name (not created: the bank creates it on first use)."""
        cleaned = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[:40] or "test"
        return f"{cleaned}-{uuid.uuid4().hex[:16]}"

    def bank_options(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """Options for :class:`strongroom.bank_plugins.s3.S3Bank` on ``bucket`` of this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "bucket": bucket,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "addressing_style": "path",
            **({"verify_ssl": False} if self.tls else {}),
            **extra,
        }

    def client(self) -> Any:
        """A plain botocore S3 client on this server (for checks behind the bank's back)."""
        return s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region, verify=not self.tls)

    def purge_bucket(self, bucket: str) -> None:
        """Delete ``bucket`` with its objects and multipart uploads (missing buckets are fine)."""
        client = self.client()
        try:
            purge_bucket(client, bucket)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its log.  Idempotent."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self.log_path is not None:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
            self.log_path = None


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def s3_client(endpoint_url: str, access_key: str, secret_key: str, region: str, verify: bool = True) -> Any:
    """A plain S3 client with path addressing and the checksum settings S3-compatible stores accept."""
    import botocore.session
    from botocore.config import Config

    global _SESSION
    config = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 3},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    with _SESSION_LOCK:  # one session (it caches the service model); sessions are not thread-safe
        if _SESSION is None:
            _SESSION = botocore.session.get_session()
        return _SESSION.create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, config=config, verify=verify)


def purge_bucket(client: Any, bucket: str, max_objects: int | None = None) -> bool:
    """Empty and delete ``bucket`` through ``client`` (aborting unfinished multipart uploads).

    With ``max_objects``, a bucket holding more objects than that is left alone
    (deleting thousands of keys one by one is slow on some stores); returns
    whether the bucket was deleted.  A missing bucket counts as deleted.
    """
    from botocore.exceptions import ClientError

    try:
        if max_objects is not None:
            first = client.list_objects_v2(Bucket=bucket, MaxKeys=max_objects + 1)
            if len(first.get("Contents", ())) > max_objects:
                return False
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", ()):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("NoSuchBucket", "404"):
            raise
    return True


def moto_server_program() -> str:
    """Path of the ``moto_server`` program: next to this Python first, then on ``PATH``."""
    beside = pathlib.Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise MotoServerError("the moto_server program is not installed (pip install 'moto[server]')")
    return found


def start_moto_server(host: str = "127.0.0.1", timeout: float = START_TIMEOUT,
                      die_with_parent: bool = True, tls: bool = False) -> MotoServer:
    """Start moto_server on ``host`` on a free port and return once it answers.

    ``tls`` serves HTTPS with a self-signed certificate made up at start-up
    (clients must not verify it; needs the ``cryptography`` package).

    ``die_with_parent`` (Linux) kills the server when the *thread* that started it
    exits: keep it for pytest and scripts, turn it off when starting from a
    short-lived thread.  Raises :class:`MotoServerError` with the server's log tail.
    """
    program = moto_server_program()
    command = [program, "-H", host, "-p", "0", *(["--ssl"] if tls else [])]
    if die_with_parent and sys.platform == "linux":
        command = dying_with_parent(command)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-moto-"))
    log_path = workdir / "moto_server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=workdir, env=env, start_new_session=True)
    except OSError as err:
        shutil.rmtree(workdir, ignore_errors=True)
        raise MotoServerError(f"cannot run {program}: {err}") from err
    try:
        endpoint = _wait_until_answering(process, log_path, began + timeout)
    except BaseException:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return MotoServer(endpoint_url=endpoint, pid=process.pid, tls=tls, start_seconds=time.monotonic() - began,
                      process=process, log_path=log_path)


def stop_moto_server(server: MotoServer) -> None:
    """Stop a server returned by :func:`start_moto_server` (same as ``server.stop()``)."""
    server.stop()


def _wait_until_answering(process: subprocess.Popen[bytes], log_path: pathlib.Path, deadline: float) -> str:
    endpoint: str | None = None
    delay = 0.02
    while True:
        if process.poll() is not None:
            raise MotoServerError(f"moto_server exited with status {process.returncode}: {tail_log(log_path)}")
        if endpoint is None:
            match = _RUNNING.search(log_path.read_bytes())
            if match:
                endpoint = match.group(1).decode("ascii")
        if endpoint is not None and _answers(endpoint):
            return endpoint
        if time.monotonic() > deadline:
            raise MotoServerError(f"moto_server did not answer within {START_TIMEOUT:.0f} s: {tail_log(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _answers(endpoint: str) -> bool:
    context = ssl._create_unverified_context() if endpoint.startswith("https:") else None  # noqa: S323
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2, context=context) as answer:
            return bool(answer.status < 500)
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False








@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server for the whole test session (each test uses its own buckets)."""
    try:
        server = start_moto_server()
    except (MotoServerError, OSError) as err:
        if must_not_skip():
            pytest.fail(f"moto_server could not start (CI=true: not skipping): {err}", pytrace=False)
        pytest.skip(f"moto_server could not start: {err}")
    try:
        yield server
    finally:
        server.stop()
