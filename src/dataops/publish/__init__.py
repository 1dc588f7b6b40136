"""Write-audit-publish: the smoke checks that compare a candidate with the published version, the
publish itself, versions and rollback, and the hold one run at a time has on its target. Used by
`dataops run`, the pipeline DAG's publish task and `dataops rollback` alike; each engine's
primitives are in its warehouse module."""
