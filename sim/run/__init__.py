"""One seeded run of a scenario: the runner (devices, fields, the ledger, the sync tool),
the adversary's runner side, the independent oracle, the report and plots, sweeps, serve."""
