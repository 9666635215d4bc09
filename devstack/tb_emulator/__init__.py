"""A protocol-faithful ThingsBoard emulator (MQTT transport, device/gateway API, RPC, rule chain)."""
