"""Allow ``python -m isscli``."""

from isscli.cli.main import main

if __name__ == "__main__":
    main()
