-- History with labels and the customer directory, loaded from S3 by COPY (the article's tables;
-- the history keeps only raw columns: features are computed, never loaded).
CREATE TABLE IF NOT EXISTS cust_payment_tx_history (
    transaction_id bigint NOT NULL,
    tx_datetime timestamp NOT NULL,
    customer_id integer NOT NULL,
    terminal_id integer NOT NULL,
    tx_amount decimal(18, 2) NOT NULL,
    tx_time_seconds integer,
    tx_time_days integer,
    tx_fraud integer NOT NULL,
    tx_fraud_scenario integer
)
DISTKEY (customer_id)
SORTKEY (tx_datetime);

CREATE TABLE IF NOT EXISTS customer_info (
    customer_id bigint NOT NULL,
    job_title varchar(500),
    email_address varchar(100),
    full_name varchar(200),
    phone_number varchar(20),
    city varchar(50),
    state varchar(50)
);

COPY cust_payment_tx_history
FROM 's3://${S3_BUCKET}/history/transactions/'
IAM_ROLE ${IAM_ROLE}
FORMAT AS CSV
IGNOREHEADER 1
GZIP
TIMEFORMAT 'YYYY-MM-DD HH:MI:SS';

COPY customer_info
FROM 's3://${S3_BUCKET}/history/customer_info/'
IAM_ROLE ${IAM_ROLE}
FORMAT AS CSV
IGNOREHEADER 1
GZIP;
