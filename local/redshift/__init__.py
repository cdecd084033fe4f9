"""Redshift emulator: DuckDB underneath, Redshift SQL on top, the Data API in front."""
