"""Test support: the helpers that the tests and the benchmarks (bench/) share; no tests here.

- ``stack``: the test stack's settings (tests/stack.env) and ``running_stack``, the one way to
  run Kafka + Mosquitto (the shared test stack, or a private one) through ``flowforge.stack``.
- ``processes``: ``start_flowforge``, the one way to start a `flowforge ...` process.
- ``unique``: names and ports unique to a test run.
- ``pipeline``: real `flowforge worker` processes on private topics; produce, collect, query.
- ``bridges``: real `flowforge bridge ...` processes; publish over MQTT, read Kafka records.
- ``end_to_end``: the whole pipeline on a private stack for fault drills, and their figures.
- ``simulator``: the RTSP simulator (`flowforge sim rtsp`) as a test process.
- ``images``, ``hostile``: test images, and the corpus of hostile payloads.
"""
