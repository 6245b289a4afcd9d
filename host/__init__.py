"""Host side of tapcash: issuer, provisioning, sync tool, ledger service and the CLI."""
