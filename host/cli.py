import click
from importlib.metadata import version

@click.group()
@click.version_option(version("tapcash"), prog_name="tapcash")
def cli() -> None:
    """tapcash"""

def main() -> None:
    cli()
