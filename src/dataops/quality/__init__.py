"""Data quality with Great Expectations: the suites, the worker process, the checks of gx/ and the Data Docs."""
