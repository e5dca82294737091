"""The shared core: settings, envelope, ClickHouse and Kafka helpers, errors.

Imported by every other package; imports none of them."""
