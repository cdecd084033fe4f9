-- Bring the transaction stream's materialized view up to date at the start of a scoring cycle, so the
-- cycle scores what reached the stream just before it (AUTO REFRESH runs when the warehouse chooses).
-- Only the view's owner may refresh it: score_and_alert connects as the same database user as apply_sql.
REFRESH MATERIALIZED VIEW cust_payment_tx_stream;
