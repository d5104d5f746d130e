"""Entry point of the `claricodec` command."""
import click

from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="claricodec")
def main():
    """ClariCodec: intelligibility-first speech codec at 200 bit/s."""


main.add_command(train)
