-- Findings of the bottleneck detector: one row per incident, open while end_time is NULL.
CREATE SEQUENCE events_id START 1;

CREATE TABLE events (
    id BIGINT PRIMARY KEY DEFAULT nextval('events_id'),
    kind VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    start_time TIMESTAMP NOT NULL,
    end_time TIMESTAMP,
    cause VARCHAR,
    evidence JSON,
    detected_at TIMESTAMP NOT NULL
);
