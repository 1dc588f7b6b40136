"""The run history: every run, whoever started it, recorded once; everything in ops/ reads it."""
