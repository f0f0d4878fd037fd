from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Column(_message.Message):
    __slots__ = ("name", "f64", "i64", "nulls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    F64_FIELD_NUMBER: _ClassVar[int]
    I64_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    f64: _containers.RepeatedScalarFieldContainer[float]
    i64: _containers.RepeatedScalarFieldContainer[int]
    nulls: bytes
    def __init__(self, name: _Optional[str] = ..., f64: _Optional[_Iterable[float]] = ..., i64: _Optional[_Iterable[int]] = ..., nulls: _Optional[bytes] = ...) -> None: ...

class Table(_message.Message):
    __slots__ = ("name", "time_ns", "devices", "device_index", "columns", "packed_names", "packed_values", "packed_nulls", "devices_text", "packed_names_text")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PACKED_NAMES_FIELD_NUMBER: _ClassVar[int]
    PACKED_VALUES_FIELD_NUMBER: _ClassVar[int]
    PACKED_NULLS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_TEXT_FIELD_NUMBER: _ClassVar[int]
    PACKED_NAMES_TEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    time_ns: _containers.RepeatedScalarFieldContainer[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    device_index: _containers.RepeatedScalarFieldContainer[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    packed_names: _containers.RepeatedScalarFieldContainer[str]
    packed_values: bytes
    packed_nulls: bytes
    devices_text: bytes
    packed_names_text: bytes
    def __init__(self, name: _Optional[str] = ..., time_ns: _Optional[_Iterable[int]] = ..., devices: _Optional[_Iterable[str]] = ..., device_index: _Optional[_Iterable[int]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., packed_names: _Optional[_Iterable[str]] = ..., packed_values: _Optional[bytes] = ..., packed_nulls: _Optional[bytes] = ..., devices_text: _Optional[bytes] = ..., packed_names_text: _Optional[bytes] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("kind", "name", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("hostname", "kernel", "agent_version", "devices", "node_id")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    kernel: str
    agent_version: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    node_id: str
    def __init__(self, hostname: _Optional[str] = ..., kernel: _Optional[str] = ..., agent_version: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., node_id: _Optional[str] = ...) -> None: ...

class GpuJob(_message.Message):
    __slots__ = ("gpu", "job", "source", "attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GPU_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    gpu: str
    job: str
    source: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, gpu: _Optional[str] = ..., job: _Optional[str] = ..., source: _Optional[str] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GpuProcess(_message.Message):
    __slots__ = ("gpu", "pid", "name", "job", "used_memory_bytes", "sm_util_percent")
    GPU_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SM_UTIL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    gpu: str
    pid: int
    name: str
    job: str
    used_memory_bytes: int
    sm_util_percent: float
    def __init__(self, gpu: _Optional[str] = ..., pid: _Optional[int] = ..., name: _Optional[str] = ..., job: _Optional[str] = ..., used_memory_bytes: _Optional[int] = ..., sm_util_percent: _Optional[float] = ...) -> None: ...

class Ownership(_message.Message):
    __slots__ = ("time_ns", "gpus", "jobs", "processes")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    gpus: _containers.RepeatedScalarFieldContainer[str]
    jobs: _containers.RepeatedCompositeFieldContainer[GpuJob]
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    def __init__(self, time_ns: _Optional[int] = ..., gpus: _Optional[_Iterable[str]] = ..., jobs: _Optional[_Iterable[_Union[GpuJob, _Mapping]]] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("node_id", "boot_id", "seq", "interval_s", "node", "tables", "sent_ns", "ownership")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    SENT_NS_FIELD_NUMBER: _ClassVar[int]
    OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_id: str
    seq: int
    interval_s: float
    node: NodeInfo
    tables: _containers.RepeatedCompositeFieldContainer[Table]
    sent_ns: int
    ownership: Ownership
    def __init__(self, node_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., seq: _Optional[int] = ..., interval_s: _Optional[float] = ..., node: _Optional[_Union[NodeInfo, _Mapping]] = ..., tables: _Optional[_Iterable[_Union[Table, _Mapping]]] = ..., sent_ns: _Optional[int] = ..., ownership: _Optional[_Union[Ownership, _Mapping]] = ...) -> None: ...

class ColumnView(_message.Message):
    __slots__ = ("name", "f64", "i64", "nulls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    F64_FIELD_NUMBER: _ClassVar[int]
    I64_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    f64: bytes
    i64: bytes
    nulls: bytes
    def __init__(self, name: _Optional[str] = ..., f64: _Optional[bytes] = ..., i64: _Optional[bytes] = ..., nulls: _Optional[bytes] = ...) -> None: ...

class TableView(_message.Message):
    __slots__ = ("name", "time_ns", "devices", "device_index", "columns", "packed_names", "packed_values", "packed_nulls", "devices_text", "packed_names_text")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PACKED_NAMES_FIELD_NUMBER: _ClassVar[int]
    PACKED_VALUES_FIELD_NUMBER: _ClassVar[int]
    PACKED_NULLS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_TEXT_FIELD_NUMBER: _ClassVar[int]
    PACKED_NAMES_TEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    time_ns: bytes
    devices: _containers.RepeatedScalarFieldContainer[str]
    device_index: bytes
    columns: _containers.RepeatedCompositeFieldContainer[ColumnView]
    packed_names: _containers.RepeatedScalarFieldContainer[str]
    packed_values: bytes
    packed_nulls: bytes
    devices_text: bytes
    packed_names_text: bytes
    def __init__(self, name: _Optional[str] = ..., time_ns: _Optional[bytes] = ..., devices: _Optional[_Iterable[str]] = ..., device_index: _Optional[bytes] = ..., columns: _Optional[_Iterable[_Union[ColumnView, _Mapping]]] = ..., packed_names: _Optional[_Iterable[str]] = ..., packed_values: _Optional[bytes] = ..., packed_nulls: _Optional[bytes] = ..., devices_text: _Optional[bytes] = ..., packed_names_text: _Optional[bytes] = ...) -> None: ...

class BatchView(_message.Message):
    __slots__ = ("node_id", "boot_id", "seq", "interval_s", "node", "tables", "sent_ns", "ownership")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    SENT_NS_FIELD_NUMBER: _ClassVar[int]
    OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_id: str
    seq: int
    interval_s: float
    node: NodeInfo
    tables: _containers.RepeatedCompositeFieldContainer[TableView]
    sent_ns: int
    ownership: Ownership
    def __init__(self, node_id: _Optional[str] = ..., boot_id: _Optional[str] = ..., seq: _Optional[int] = ..., interval_s: _Optional[float] = ..., node: _Optional[_Union[NodeInfo, _Mapping]] = ..., tables: _Optional[_Iterable[_Union[TableView, _Mapping]]] = ..., sent_ns: _Optional[int] = ..., ownership: _Optional[_Union[Ownership, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("seq", "status", "rows")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Ack.Status]
        STORED: _ClassVar[Ack.Status]
        DUPLICATE: _ClassVar[Ack.Status]
    STATUS_UNSPECIFIED: Ack.Status
    STORED: Ack.Status
    DUPLICATE: Ack.Status
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    status: Ack.Status
    rows: int
    def __init__(self, seq: _Optional[int] = ..., status: _Optional[_Union[Ack.Status, str]] = ..., rows: _Optional[int] = ...) -> None: ...

class TraceLabel(_message.Message):
    __slots__ = ("kind", "node", "device", "start_ns", "end_ns", "severity", "cause")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    node: str
    device: str
    start_ns: int
    end_ns: int
    severity: str
    cause: str
    def __init__(self, kind: _Optional[str] = ..., node: _Optional[str] = ..., device: _Optional[str] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., severity: _Optional[str] = ..., cause: _Optional[str] = ...) -> None: ...

class TraceHeader(_message.Message):
    __slots__ = ("version", "interval_s", "nodes", "labels", "source", "created_ns")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    version: int
    interval_s: float
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    labels: _containers.RepeatedCompositeFieldContainer[TraceLabel]
    source: str
    created_ns: int
    def __init__(self, version: _Optional[int] = ..., interval_s: _Optional[float] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., labels: _Optional[_Iterable[_Union[TraceLabel, _Mapping]]] = ..., source: _Optional[str] = ..., created_ns: _Optional[int] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "max_rows")
    SQL_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    max_rows: int
    def __init__(self, sql: _Optional[str] = ..., max_rows: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("arrow_ipc", "truncated")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    truncated: bool
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., truncated: _Optional[bool] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("start_ns", "end_ns", "thresholds")
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    start_ns: int
    end_ns: int
    thresholds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., thresholds: _Optional[_Iterable[str]] = ...) -> None: ...

class NameJobRequest(_message.Message):
    __slots__ = ("action", "job", "nodes", "gpus", "start_ns", "end_ns", "attrs")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NAME: _ClassVar[NameJobRequest.Action]
        END: _ClassVar[NameJobRequest.Action]
        FORGET: _ClassVar[NameJobRequest.Action]
    NAME: NameJobRequest.Action
    END: NameJobRequest.Action
    FORGET: NameJobRequest.Action
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACTION_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    action: NameJobRequest.Action
    job: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    gpus: _containers.RepeatedScalarFieldContainer[str]
    start_ns: int
    end_ns: int
    attrs: _containers.ScalarMap[str, str]
    def __init__(self, action: _Optional[_Union[NameJobRequest.Action, str]] = ..., job: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., gpus: _Optional[_Iterable[str]] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...
