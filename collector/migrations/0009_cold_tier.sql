-- The cold tier (collector/cold.py): raw samples live in <table>_hot, where ingest writes, and
-- whole days of them may move to Parquet files; what readers query under the table's own name is
-- a view of both, rebuilt by the collector whenever files come or go (here: the hot part alone).

ALTER TABLE cpu RENAME TO cpu_hot;
CREATE VIEW cpu AS SELECT node, device, time, user_seconds, nice_seconds, system_seconds, idle_seconds, iowait_seconds, irq_seconds, softirq_seconds, steal_seconds, guest_seconds, guest_nice_seconds, frequency_hertz, frequency_max_hertz, core_id, package_id, core_throttles, package_throttles FROM cpu_hot;
ALTER TABLE load RENAME TO load_hot;
CREATE VIEW load AS SELECT node, device, time, load1, load5, load15, procs_running, procs_blocked, context_switches, interrupts, forks FROM load_hot;
ALTER TABLE memory RENAME TO memory_hot;
CREATE VIEW memory AS SELECT node, device, time, mem_total_bytes, mem_free_bytes, mem_available_bytes, buffers_bytes, cached_bytes, dirty_bytes, writeback_bytes, active_bytes, inactive_bytes, mapped_bytes, shmem_bytes, slab_bytes, swap_total_bytes, swap_free_bytes, swap_cached_bytes, hugepages_total, hugepages_free, hugepage_size_bytes FROM memory_hot;
ALTER TABLE memory_numa RENAME TO memory_numa_hot;
CREATE VIEW memory_numa AS SELECT node, device, time, mem_total_bytes, mem_free_bytes, mem_used_bytes, file_pages_bytes FROM memory_numa_hot;
ALTER TABLE pressure RENAME TO pressure_hot;
CREATE VIEW pressure AS SELECT node, device, time, cpu_some_seconds, cpu_full_seconds, io_some_seconds, io_full_seconds, memory_some_seconds, memory_full_seconds, irq_full_seconds FROM pressure_hot;
ALTER TABLE disk RENAME TO disk_hot;
CREATE VIEW disk AS SELECT node, device, time, reads_completed, reads_merged, read_bytes, writes_completed, writes_merged, written_bytes, discards_completed, discards_merged, discarded_sectors, flush_requests, read_time_seconds, write_time_seconds, io_time_seconds, io_time_weighted_seconds, discard_time_seconds, flush_requests_time_seconds, io_now FROM disk_hot;
ALTER TABLE nic RENAME TO nic_hot;
CREATE VIEW nic AS SELECT node, device, time, rx_bytes, rx_packets, rx_errors, rx_dropped, rx_fifo_errors, rx_frame_errors, rx_compressed, rx_multicast, tx_bytes, tx_packets, tx_errors, tx_dropped, tx_fifo_errors, tx_collisions, tx_carrier_errors, tx_compressed, carrier_changes, up, speed_bytes_per_second, mtu FROM nic_hot;
ALTER TABLE tcp RENAME TO tcp_hot;
CREATE VIEW tcp AS SELECT node, device, time, active_opens, passive_opens, in_segs, out_segs, retrans_segs, in_errs, out_rsts, curr_estab FROM tcp_hot;
ALTER TABLE rdma RENAME TO rdma_hot;
CREATE VIEW rdma AS SELECT node, device, time, port_data_received_bytes, port_data_transmitted_bytes, port_packets_received, port_packets_transmitted, port_discards_received, unicast_packets_received, unicast_packets_transmitted, multicast_packets_received, multicast_packets_transmitted, port_errors_received, port_discards_transmitted, port_transmit_wait, link_downed, link_error_recovery, symbol_error, port_constraint_errors_received, port_constraint_errors_transmitted, excessive_buffer_overrun_errors, local_link_integrity_errors, vl15_dropped, np_cnp_sent, rp_cnp_handled, rp_cnp_ignored, np_ecn_marked_roce_packets, out_of_sequence, packet_seq_err, local_ack_timeout_err, duplicate_request, implied_nak_seq_err, rnr_nak_retry_err, roce_adp_retrans, roce_slow_restart, out_of_buffer, state_id, physical_state_id, rate_bytes_per_second FROM rdma_hot;
ALTER TABLE hwmon RENAME TO hwmon_hot;
CREATE VIEW hwmon AS SELECT node, device, time, temp_celsius, temp_max_celsius, temp_crit_celsius, temp_crit_alarm FROM hwmon_hot;
ALTER TABLE thermal RENAME TO thermal_hot;
CREATE VIEW thermal AS SELECT node, device, time, temp_celsius FROM thermal_hot;
ALTER TABLE gpu RENAME TO gpu_hot;
CREATE VIEW gpu AS SELECT node, device, time, util_gpu_percent, util_memory_percent, util_gpu_sampled_percent, sm_clock_hertz, mem_clock_hertz, sm_clock_max_hertz, mem_clock_max_hertz, temperature_celsius, memory_temperature_celsius, temperature_slowdown_celsius, temperature_shutdown_celsius, power_watts, power_limit_watts, fan_speed_percent, gpm_sm_active_ratio, gpm_sm_occupancy_ratio, gpm_tensor_active_ratio, gpm_dram_bandwidth_ratio, memory_used_bytes, memory_total_bytes, clocks_event_reasons, pcie_link_gen, pcie_link_width, energy_joules, throttle_sw_power_seconds, throttle_sw_thermal_seconds, throttle_hw_thermal_seconds, throttle_hw_power_brake_seconds, pcie_tx_bytes, pcie_rx_bytes, pcie_replays, nvlink_tx_bytes, nvlink_rx_bytes, nvlink_crc_errors, nvlink_replay_errors, nvlink_recovery_errors, ecc_sbe_volatile, ecc_dbe_volatile, ecc_sbe_aggregate, ecc_dbe_aggregate, remapped_rows_correctable, remapped_rows_uncorrectable, remapped_rows_pending, remapped_rows_failure FROM gpu_hot;
ALTER TABLE gpu_xid RENAME TO gpu_xid_hot;
CREATE VIEW gpu_xid AS SELECT node, device, time, xid FROM gpu_xid_hot;
ALTER TABLE sampler RENAME TO sampler_hot;
CREATE VIEW sampler AS SELECT node, device, time, duration_seconds, success FROM sampler_hot;

-- One row per Parquet file: which table and UTC day it holds (seq: a later file for rows that
-- arrived after the day was moved), its path, rows and bytes.
CREATE TABLE cold_files (
    tbl VARCHAR NOT NULL,
    day DATE NOT NULL,
    seq INTEGER NOT NULL,
    path VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    written_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tbl, day, seq)
);
