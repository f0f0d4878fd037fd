-- Remote-write series the receiver refused (no label naming the node or device, a value that is not
-- finite, an instance the sender may not write for): answered 400, which a sender does not retry,
-- so their samples are kept here rather than lost. Removed with raw samples by retention.
CREATE TABLE received_refused (
    received_at TIMESTAMP NOT NULL,
    sender VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    series VARCHAR NOT NULL,  -- name{label="value",...}, as the 400 names it
    time TIMESTAMP,  -- NULL only for a series whose samples could not be read either
    value DOUBLE
);
