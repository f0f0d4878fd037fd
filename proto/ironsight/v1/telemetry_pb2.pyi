from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class Column(_message.Message):
    __slots__ = ("f64", "i64", "name", "nulls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    F64_FIELD_NUMBER: _ClassVar[int]
    I64_FIELD_NUMBER: _ClassVar[int]
    NULLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    f64: _containers.RepeatedScalarFieldContainer[float]
    i64: _containers.RepeatedScalarFieldContainer[int]
    nulls: bytes
    def __init__(
        self,
        name: str | None = ...,
        f64: _Iterable[float] | None = ...,
        i64: _Iterable[int] | None = ...,
        nulls: bytes | None = ...,
    ) -> None: ...

class Table(_message.Message):
    __slots__ = ("columns", "device_index", "devices", "name", "time_ns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    time_ns: _containers.RepeatedScalarFieldContainer[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    device_index: _containers.RepeatedScalarFieldContainer[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(
        self,
        name: str | None = ...,
        time_ns: _Iterable[int] | None = ...,
        devices: _Iterable[str] | None = ...,
        device_index: _Iterable[int] | None = ...,
        columns: _Iterable[Column | _Mapping] | None = ...,
    ) -> None: ...

class Device(_message.Message):
    __slots__ = ("attrs", "kind", "name")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    attrs: _containers.ScalarMap[str, str]
    def __init__(
        self,
        kind: str | None = ...,
        name: str | None = ...,
        attrs: _Mapping[str, str] | None = ...,
    ) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("agent_version", "devices", "hostname", "kernel")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    kernel: str
    agent_version: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(
        self,
        hostname: str | None = ...,
        kernel: str | None = ...,
        agent_version: str | None = ...,
        devices: _Iterable[Device | _Mapping] | None = ...,
    ) -> None: ...

class Batch(_message.Message):
    __slots__ = ("boot_id", "interval_s", "node", "node_id", "seq", "tables")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_id: str
    seq: int
    interval_s: float
    node: NodeInfo
    tables: _containers.RepeatedCompositeFieldContainer[Table]
    def __init__(
        self,
        node_id: str | None = ...,
        boot_id: str | None = ...,
        seq: int | None = ...,
        interval_s: float | None = ...,
        node: NodeInfo | _Mapping | None = ...,
        tables: _Iterable[Table | _Mapping] | None = ...,
    ) -> None: ...

class Ack(_message.Message):
    __slots__ = ("rows", "seq", "status")
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
    def __init__(
        self,
        seq: int | None = ...,
        status: Ack.Status | str | None = ...,
        rows: int | None = ...,
    ) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("max_rows", "sql")
    SQL_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    max_rows: int
    def __init__(self, sql: str | None = ..., max_rows: int | None = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("arrow_ipc", "truncated")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    truncated: bool
    def __init__(self, arrow_ipc: bytes | None = ..., truncated: bool | None = ...) -> None: ...
