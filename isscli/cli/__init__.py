"""Command-line interface: one module per subcommand, all thin layers over the library."""
