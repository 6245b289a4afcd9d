"""`python -m tapcash.host.bench ...` is `tapcash bench ...` (e.g. `render FILE`)."""

from . import bench

bench(prog_name="python -m tapcash.host.bench")
