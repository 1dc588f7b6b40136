"""The AdventureWorks source tables: their contract, readers, the synthetic generator and fault injection."""
