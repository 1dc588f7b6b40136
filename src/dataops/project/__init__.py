"""The dbt project, in process: the runner, offline compile and validation, structure checks, result
interpretation."""
