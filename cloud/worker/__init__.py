"""Streams consumer, rules and the MQTT dispatcher to ThingsBoard."""
