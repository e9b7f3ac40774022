"""Allow ``python -m isscli``: the command line's entry point."""

from .cli.main import main

if __name__ == "__main__":
    main()
