"""``python -m mmgan`` (and ``accelerate launch -m mmgan``) runs the CLI."""

from mmgan.cli.commands import main

if __name__ == "__main__":
    main()
