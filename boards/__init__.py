"""Board profiles (data in profiles/*.json) and their host-side validator (profile.py)."""
