"""`python -m asr_cli ...`, which is also how torchrun starts it: `torchrun --nproc_per_node 2 -m asr_cli train ...`."""

from .cli import main

if __name__ == "__main__":
    main()
