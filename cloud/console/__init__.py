"""The control room's operator side: credentials, sessions, the audit stream, the fleet's status."""
