"""The feedback webhook's work: motor telemetry closes ledger commands and recovers lost dones."""
