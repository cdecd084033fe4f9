"""Card-transaction simulator, Kinesis producer and history export.

- producer.simulator: WorldConfig, simulate_history, LiveSimulator, customer_info
- producer.kinesis: KinesisWriter, RateLimiter
- producer.stream: run_stream (transactions + delayed labels to Kinesis)
- producer.export: history / customer_info CSV, S3 upload
- producer.cli: `python -m producer history|stream`
"""
