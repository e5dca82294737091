"""The sink: metadata rows into ClickHouse in batches, spooled locally while it is down."""
