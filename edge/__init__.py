"""The Raspberry Pi side: thingsboard-gateway with our connector, stepper drivers, local buffer."""
