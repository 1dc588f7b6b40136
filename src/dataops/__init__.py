"""dataops: a DataOps platform for dbt + Airflow + SQL Server, shown on AdventureWorks."""

__version__ = "0.1.0"
