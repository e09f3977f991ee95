"""Storage: analytical Parquet lake read through DuckDB, operational SQL store via SQLAlchemy."""
