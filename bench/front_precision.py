#!/usr/bin/env python3
"""The claricodec CLI, or a bench script, with the Whisper front computed at another
CTranslate2 precision than the shipped float32, to measure what it changes
(docs/training.md, sessions 16-17), e.g.

    python3 bench/front_precision.py int8 eval HELDOUT.jsonl --threads 1 --save-hyps F
    python3 bench/front_precision.py int8 bench/peers.py --judge sphinx ...
"""
import runpy
import sys

from claricodec import whisper_front

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: front_precision.py COMPUTE_TYPE (int8, float32, ...) "
                 "CLARICODEC-ARGS... | SCRIPT.py ARGS...")
    whisper_front.WhisperStates.compute_type = sys.argv.pop(1)
    if sys.argv[1].endswith(".py"):
        script = sys.argv.pop(1)
        sys.argv[0] = script
        runpy.run_path(script, run_name="__main__")
    else:
        from claricodec.cli.main import main
        sys.argv[0] = "claricodec"
        main()
