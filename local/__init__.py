"""The embedded local stack: Redshift emulator (DuckDB), Data API endpoint, moto, scheduler, demo."""
