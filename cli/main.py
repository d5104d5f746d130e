"""Entry point of the `claricodec` command."""
import click

from .codec_commands import decode, encode, info
from .eval_command import eval_command
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="claricodec")
def main():
    """ClariCodec: intelligibility-first speech codec at 200 bit/s.

    \b
      claricodec encode speech.wav speech.cc     # 25 bytes per second of speech
      claricodec decode speech.cc speech.out.wav
      sox in.flac -t wav - | claricodec encode - - | claricodec decode - out.wav
      claricodec encode recordings/ coded/        # a whole tree, mirrored
    """


for command in (encode, decode, info, train, eval_command):
    main.add_command(command)
