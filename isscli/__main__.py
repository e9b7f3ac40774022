"""Allow ``python -m isscli``: the command line's entry point (this file belongs to the CLI, not the library)."""

from .cli.entry import main

if __name__ == "__main__":
    main()
