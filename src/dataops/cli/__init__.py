"""The `dataops` command line: parses arguments and draws; all the work is in the library below it."""
