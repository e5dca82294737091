"""FlowForge bridges: MQTT, RTSP and batch directories into Kafka."""
