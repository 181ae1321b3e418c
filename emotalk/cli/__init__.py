"""One module per CLI command: HELP (one line), add_arguments(parser), run(args) -> exit code."""
