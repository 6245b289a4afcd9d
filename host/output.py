"""What every `--json` prints: one JSON document, indented, keys sorted (jq and json.loads read
it alike). `tapcash sim serve --json` is the one exception: one line, when ready, for a
program that reads its stdout line by line."""

import json
from typing import Any

import click


def echo_json(doc: Any, *, err: bool = False) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True), err=err)
