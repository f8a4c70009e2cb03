"""Grantflow's Kafka adapter: topic names and the event envelope, publishing, the at-least-once
consumer loop with dead letters, topic administration, the broker checks the embedded broker
needs, and readers for operators and tests.

Nothing outside this package imports the Kafka client library (kafka-python); only
`clients` does. Its clients are blocking, so each runs on a thread of its own and the rest of
Grantflow awaits them.
"""

from services.common.kafka.clients import (
    BrokerAdmin,
    Delivery,
    GroupMember,
    Outgoing,
    PartitionLag,
    Producer,
    Record,
    broker_incarnation,
    consumer_lag,
    ensure_topics,
    read_topic,
    record_counts,
    redrive,
)
from services.common.kafka.consumer import EventConsumer, Handler, is_transient
from services.common.kafka.stopping import sleep_or_stop, until_stopped
from services.common.kafka.topics import (
    ALL_STREAMS,
    APPLICATIONS,
    DISBURSEMENT,
    DLQ_SUFFIX,
    GRANTS,
    PARTITIONS,
    REVIEW,
    all_topics,
    consumer_group,
    dead_letter_topic,
    incarnation_topic,
    make_envelope,
    topic,
)

__all__ = [
    "ALL_STREAMS",
    "APPLICATIONS",
    "DISBURSEMENT",
    "DLQ_SUFFIX",
    "GRANTS",
    "PARTITIONS",
    "REVIEW",
    "BrokerAdmin",
    "Delivery",
    "EventConsumer",
    "GroupMember",
    "Handler",
    "Outgoing",
    "PartitionLag",
    "Producer",
    "Record",
    "all_topics",
    "broker_incarnation",
    "consumer_group",
    "consumer_lag",
    "dead_letter_topic",
    "ensure_topics",
    "incarnation_topic",
    "is_transient",
    "make_envelope",
    "read_topic",
    "record_counts",
    "redrive",
    "sleep_or_stop",
    "topic",
    "until_stopped",
]
