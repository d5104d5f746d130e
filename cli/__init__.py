"""The `claricodec` command-line app (installed as claricodec.cli)."""
