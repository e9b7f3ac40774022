"""Allow ``python -m isscli``: the command line's entry point."""

from isscli.cli.entry import main

if __name__ == "__main__":
    main()
