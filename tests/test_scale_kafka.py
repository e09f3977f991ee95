"""The Kafka adapter against a real Kafka-protocol broker (``VOXLOOP_TEST_KAFKA``)."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from voxloop.config import Settings
from voxloop.ingest.service import lake_rows

BOOTSTRAP = os.environ.get("VOXLOOP_TEST_KAFKA", "127.0.0.1:9092")


def _kafka_up() -> bool:
    host, _, port = BOOTSTRAP.partition(":")
    try:
        with socket.create_connection((host, int(port or 9092)), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _kafka_up(),
    reason=f"no Kafka-protocol broker at {BOOTSTRAP} (none runs on this machine and none "
    "was installed; set VOXLOOP_TEST_KAFKA=host:port to run these tests)",
)


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


def test_kafka_commits_after_store_and_quarantines_poison(settings: Settings) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from voxloop.ingest.broker import consume_kafka

    topic = "voxloop-test-" + uuid.uuid4().hex[:10]
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(
        timeout=30
    )
    try:
        producer = Producer({"bootstrap.servers": BOOTSTRAP})
        for i in range(2_000):
            producer.produce(topic, json.dumps(_voice(i)).encode())
        for i in range(50):
            producer.produce(topic, b"\x00not json " + str(i).encode())
        producer.produce(topic, json.dumps(_voice(7)).encode())  # a repeated record
        assert producer.flush(30) == 0

        stats = consume_kafka(
            settings=settings,
            bootstrap=BOOTSTRAP,
            topic=topic,
            batch_size=300,
            stages=False,
            idle_exit=5,
            progress=0,
        )
        assert (stats.stored, stats.quarantined, stats.duplicates) == (2_000, 50, 1)
        assert lake_rows(settings=settings, table="voices") == 2_000
        # Offsets were committed after each stored batch: a restart finds nothing new.
        again = consume_kafka(
            settings=settings,
            bootstrap=BOOTSTRAP,
            topic=topic,
            batch_size=300,
            stages=False,
            idle_exit=5,
            progress=0,
        )
        assert again.consumed == stats.consumed and again.lag == 0
    finally:
        admin.delete_topics([topic])
