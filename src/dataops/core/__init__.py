"""What every other subpackage stands on: configuration, errors and exit codes, findings."""
