-- Remote write received (collector/receive/): samples wait here, one row each, until every part of
-- their row has arrived (a sender spreads one scrape's series over parallel requests), then settle
-- into the tables as whole rows. Acknowledged once committed here.
CREATE TABLE received (
    node VARCHAR NOT NULL,
    tbl VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    col VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    value DOUBLE NOT NULL,
    received_at TIMESTAMP NOT NULL
);

-- Each GPU's last DCGM_FI_DEV_XID_ERRORS value settled: an XID is new when the value changes to it.
CREATE TABLE received_xid (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    xid DOUBLE NOT NULL,
    PRIMARY KEY (node, device)
);
