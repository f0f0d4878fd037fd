-- Each node's clock against the collector's (collector/clocks.py): the shift a batch's samples were
-- stored with (original stamp = stored time - clock_offset_ns), and the node's latest estimate.
ALTER TABLE batches ADD COLUMN clock_offset_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN clock_offset_s DOUBLE;
