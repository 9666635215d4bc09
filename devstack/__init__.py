"""What production gets from others, for local runs and tests: Redis, the ThingsBoard emulator, the stack."""
