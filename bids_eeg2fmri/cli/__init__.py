"""The command line: parser, argument checks, exit codes and the entry point."""
