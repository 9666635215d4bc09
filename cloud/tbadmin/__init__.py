"""ThingsBoard administration over its REST API (provisioning only; the realtime path is MQTT)."""
