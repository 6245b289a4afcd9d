"""The ledger's environment variables, in a module that imports nothing (the CLI reads them
without loading FastAPI; the app factory reads them in each uvicorn worker)."""

ENV_DB = "TAPCASH_LEDGER_DB"
ENV_KEY = "TAPCASH_LEDGER_ISSUER_KEY"
ENV_TOKEN = "TAPCASH_LEDGER_TOKEN"
ENV_POOL = "TAPCASH_LEDGER_POOL"
ENV_DB_WAIT = "TAPCASH_LEDGER_DB_WAIT"  # seconds a request waits on a database that is gone (db.py)
DB_WAIT_S = 5.0  # its default
ENV_VERIFY_PROCS = "TAPCASH_LEDGER_VERIFY_PROCS"  # signature helpers per worker (verify.py)
ENV_URL = "TAPCASH_LEDGER_URL"  # where the operator commands and the sync tool find it
DEFAULT_URL = "http://127.0.0.1:8700"
