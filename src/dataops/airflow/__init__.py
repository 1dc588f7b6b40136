"""What the Airflow DAGs call: their shared settings, the Cosmos task group, the watcher's one dbt
build, and single-call tasks. DAG files stay thin."""
