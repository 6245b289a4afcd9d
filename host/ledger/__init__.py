"""The online ledger: verifies device journals, posts double-entry movements, catches
double spends."""
