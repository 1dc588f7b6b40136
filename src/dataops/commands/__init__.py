"""One module per `dataops` command that drives the rest: run, load, doctor, query, docs, the detection matrix."""
