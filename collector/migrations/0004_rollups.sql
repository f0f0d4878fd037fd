-- One-minute rollups of every stored column, kept after the raw samples are pruned (collector/retention.py).
-- Long form: one row per table, column, node, device and minute. Counters keep their increase in the minute
-- (resets handled), gauges their min, max, mean and last value.
CREATE TABLE rollups_1m (
    tbl VARCHAR NOT NULL,
    col VARCHAR NOT NULL,
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    min DOUBLE,
    max DOUBLE,
    mean DOUBLE,
    last DOUBLE,
    increase DOUBLE,
    samples INTEGER NOT NULL
);
CREATE TABLE retention_state (
    name VARCHAR PRIMARY KEY,
    rolled_until TIMESTAMP NOT NULL
);
