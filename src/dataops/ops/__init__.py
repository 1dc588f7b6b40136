"""Operations on the run history: the monitor (dbt_monitoring), notifications."""
