"""Scenarios: a TOML file describing a rollout and its seeded schedule of events;
the built-in ones are in builtin/."""
