"""SQL Server Browser (UDP 1434): the request that lists the instances, and how to read the list."""

from __future__ import annotations

import struct

SQL_BROWSER_REQUEST = b"\x03"  # CLNT_UCAST_EX: list the instances


def parse_sql_browser_reply(data: bytes, request: bytes) -> dict:
    if len(data) < 3 or data[0] != 0x05:
        raise ValueError("not an SQL Server Browser response (SVR_RESP)")
    (length,) = struct.unpack("<H", data[1:3])
    text = data[3 : 3 + length].decode("ascii", "replace")
    instances = []
    for record in filter(None, text.split(";;")):
        fields = record.split(";")
        instances.append(dict(zip(fields[::2], fields[1::2], strict=False)))
    names = ", ".join(
        f"{i.get('ServerName', '?')}\\{i.get('InstanceName', '?')} tcp {i.get('tcp', '-')}" for i in instances
    )
    return {"detail": f"SQL Server Browser lists {names or 'no instances'}", "instances": instances}
