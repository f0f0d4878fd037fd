-- Initial schema. Frozen once released: later changes are new numbered files.

CREATE TABLE batches (
    node VARCHAR NOT NULL,
    boot_id VARCHAR NOT NULL,
    seq UBIGINT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    rows BIGINT NOT NULL,
    PRIMARY KEY (node, boot_id, seq)
);

CREATE TABLE nodes (
    node VARCHAR PRIMARY KEY,
    hostname VARCHAR,
    kernel VARCHAR,
    agent_version VARCHAR,
    boot_id VARCHAR,
    interval_s DOUBLE,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL
);

CREATE TABLE devices (
    node VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    attrs MAP(VARCHAR, VARCHAR),
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (node, kind, device)
);

CREATE TABLE cpu (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    user_seconds DOUBLE,
    nice_seconds DOUBLE,
    system_seconds DOUBLE,
    idle_seconds DOUBLE,
    iowait_seconds DOUBLE,
    irq_seconds DOUBLE,
    softirq_seconds DOUBLE,
    steal_seconds DOUBLE,
    guest_seconds DOUBLE,
    guest_nice_seconds DOUBLE,
    frequency_hertz DOUBLE,
    frequency_max_hertz DOUBLE,
    core_id BIGINT,
    package_id BIGINT,
    core_throttles BIGINT,
    package_throttles BIGINT
);

CREATE TABLE load (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    load1 DOUBLE,
    load5 DOUBLE,
    load15 DOUBLE,
    procs_running BIGINT,
    procs_blocked BIGINT,
    context_switches BIGINT,
    interrupts BIGINT,
    forks BIGINT
);

CREATE TABLE memory (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    mem_total_bytes BIGINT,
    mem_free_bytes BIGINT,
    mem_available_bytes BIGINT,
    buffers_bytes BIGINT,
    cached_bytes BIGINT,
    dirty_bytes BIGINT,
    writeback_bytes BIGINT,
    active_bytes BIGINT,
    inactive_bytes BIGINT,
    mapped_bytes BIGINT,
    shmem_bytes BIGINT,
    slab_bytes BIGINT,
    swap_total_bytes BIGINT,
    swap_free_bytes BIGINT,
    swap_cached_bytes BIGINT,
    hugepages_total BIGINT,
    hugepages_free BIGINT,
    hugepage_size_bytes BIGINT
);

CREATE TABLE memory_numa (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    mem_total_bytes BIGINT,
    mem_free_bytes BIGINT,
    mem_used_bytes BIGINT,
    file_pages_bytes BIGINT
);

CREATE TABLE pressure (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    cpu_some_seconds DOUBLE,
    cpu_full_seconds DOUBLE,
    io_some_seconds DOUBLE,
    io_full_seconds DOUBLE,
    memory_some_seconds DOUBLE,
    memory_full_seconds DOUBLE,
    irq_full_seconds DOUBLE
);

CREATE TABLE disk (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    reads_completed BIGINT,
    reads_merged BIGINT,
    read_bytes BIGINT,
    writes_completed BIGINT,
    writes_merged BIGINT,
    written_bytes BIGINT,
    discards_completed BIGINT,
    discards_merged BIGINT,
    discarded_sectors BIGINT,
    flush_requests BIGINT,
    read_time_seconds DOUBLE,
    write_time_seconds DOUBLE,
    io_time_seconds DOUBLE,
    io_time_weighted_seconds DOUBLE,
    discard_time_seconds DOUBLE,
    flush_requests_time_seconds DOUBLE,
    io_now BIGINT
);

CREATE TABLE nic (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    rx_bytes BIGINT,
    rx_packets BIGINT,
    rx_errors BIGINT,
    rx_dropped BIGINT,
    rx_fifo_errors BIGINT,
    rx_frame_errors BIGINT,
    rx_compressed BIGINT,
    rx_multicast BIGINT,
    tx_bytes BIGINT,
    tx_packets BIGINT,
    tx_errors BIGINT,
    tx_dropped BIGINT,
    tx_fifo_errors BIGINT,
    tx_collisions BIGINT,
    tx_carrier_errors BIGINT,
    tx_compressed BIGINT,
    carrier_changes BIGINT,
    up BIGINT,
    speed_bytes_per_second BIGINT,
    mtu BIGINT
);

CREATE TABLE tcp (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    active_opens BIGINT,
    passive_opens BIGINT,
    in_segs BIGINT,
    out_segs BIGINT,
    retrans_segs BIGINT,
    in_errs BIGINT,
    out_rsts BIGINT,
    curr_estab BIGINT
);

CREATE TABLE rdma (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    port_data_received_bytes BIGINT,
    port_data_transmitted_bytes BIGINT,
    port_packets_received BIGINT,
    port_packets_transmitted BIGINT,
    port_discards_received BIGINT,
    unicast_packets_received BIGINT,
    unicast_packets_transmitted BIGINT,
    multicast_packets_received BIGINT,
    multicast_packets_transmitted BIGINT,
    port_errors_received BIGINT,
    port_discards_transmitted BIGINT,
    port_transmit_wait BIGINT,
    link_downed BIGINT,
    link_error_recovery BIGINT,
    symbol_error BIGINT,
    port_constraint_errors_received BIGINT,
    port_constraint_errors_transmitted BIGINT,
    excessive_buffer_overrun_errors BIGINT,
    local_link_integrity_errors BIGINT,
    vl15_dropped BIGINT,
    np_cnp_sent BIGINT,
    rp_cnp_handled BIGINT,
    rp_cnp_ignored BIGINT,
    np_ecn_marked_roce_packets BIGINT,
    out_of_sequence BIGINT,
    packet_seq_err BIGINT,
    local_ack_timeout_err BIGINT,
    duplicate_request BIGINT,
    implied_nak_seq_err BIGINT,
    rnr_nak_retry_err BIGINT,
    roce_adp_retrans BIGINT,
    roce_slow_restart BIGINT,
    out_of_buffer BIGINT,
    state_id BIGINT,
    physical_state_id BIGINT,
    rate_bytes_per_second BIGINT
);

CREATE TABLE hwmon (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    temp_celsius DOUBLE,
    temp_max_celsius DOUBLE,
    temp_crit_celsius DOUBLE,
    temp_crit_alarm DOUBLE
);

CREATE TABLE thermal (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    temp_celsius DOUBLE
);

CREATE TABLE gpu (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    util_gpu_percent DOUBLE,
    util_memory_percent DOUBLE,
    util_gpu_sampled_percent DOUBLE,
    sm_clock_hertz DOUBLE,
    mem_clock_hertz DOUBLE,
    sm_clock_max_hertz DOUBLE,
    mem_clock_max_hertz DOUBLE,
    temperature_celsius DOUBLE,
    memory_temperature_celsius DOUBLE,
    temperature_slowdown_celsius DOUBLE,
    temperature_shutdown_celsius DOUBLE,
    power_watts DOUBLE,
    power_limit_watts DOUBLE,
    fan_speed_percent DOUBLE,
    gpm_sm_active_ratio DOUBLE,
    gpm_sm_occupancy_ratio DOUBLE,
    gpm_tensor_active_ratio DOUBLE,
    gpm_dram_bandwidth_ratio DOUBLE,
    memory_used_bytes BIGINT,
    memory_total_bytes BIGINT,
    clocks_event_reasons BIGINT,
    pcie_link_gen BIGINT,
    pcie_link_width BIGINT,
    energy_joules DOUBLE,
    throttle_sw_power_seconds DOUBLE,
    throttle_sw_thermal_seconds DOUBLE,
    throttle_hw_thermal_seconds DOUBLE,
    throttle_hw_power_brake_seconds DOUBLE,
    pcie_tx_bytes BIGINT,
    pcie_rx_bytes BIGINT,
    pcie_replays BIGINT,
    nvlink_tx_bytes BIGINT,
    nvlink_rx_bytes BIGINT,
    nvlink_crc_errors BIGINT,
    nvlink_replay_errors BIGINT,
    nvlink_recovery_errors BIGINT,
    ecc_sbe_volatile BIGINT,
    ecc_dbe_volatile BIGINT,
    ecc_sbe_aggregate BIGINT,
    ecc_dbe_aggregate BIGINT,
    remapped_rows_correctable BIGINT,
    remapped_rows_uncorrectable BIGINT,
    remapped_rows_pending BIGINT,
    remapped_rows_failure BIGINT
);

CREATE TABLE gpu_xid (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    xid BIGINT
);

CREATE TABLE sampler (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    duration_seconds DOUBLE,
    success BIGINT
);
