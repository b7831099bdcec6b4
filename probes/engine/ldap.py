"""LDAP: an anonymous read of the root DSE, in the few BER encodings it takes."""

from __future__ import annotations

import asyncio

from .checks import Check


def _ber(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def ldap_rootdse_request(message_id: int = 1) -> bytes:
    """An anonymous search of the root DSE (base "", scope base, (objectClass=*))."""
    attributes = _ber(0x30, b"".join(_ber(0x04, a) for a in (b"namingContexts", b"supportedLDAPVersion")))
    search = (
        _ber(0x04, b"")  # baseObject
        + _ber(0x0A, b"\x00")  # scope: baseObject
        + _ber(0x0A, b"\x00")  # derefAliases: never
        + _ber(0x02, b"\x00")  # sizeLimit
        + _ber(0x02, b"\x05")  # timeLimit
        + _ber(0x01, b"\x00")  # typesOnly: false
        + _ber(0x87, b"objectClass")  # filter: present
        + attributes
    )
    return _ber(0x30, _ber(0x02, bytes([message_id])) + _ber(0x63, search))


async def _read_ber(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    tag, first = await reader.readexactly(2)
    length = first
    if first & 0x80:
        length = int.from_bytes(await reader.readexactly(first & 0x7F), "big")
    return tag, await reader.readexactly(length)


def _ber_items(data: bytes) -> list[tuple[int, bytes]]:
    items, offset = [], 0
    while offset < len(data):
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        items.append((tag, data[offset : offset + length]))
        offset += length
    return items


def _octet_strings(data: bytes) -> list[str]:
    """Every OCTET STRING inside a constructed BER value, depth first."""
    found = []
    for tag, content in _ber_items(data):
        if tag == 0x04:
            found.append(content.decode("utf-8", "replace"))
        elif tag & 0x20:
            found += _octet_strings(content)
    return found


async def speak_ldap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, check: Check) -> dict:
    writer.write(ldap_rootdse_request())
    tag, message = await _read_ber(reader)
    items = _ber_items(message)
    if tag != 0x30 or len(items) < 2 or items[1][0] not in (0x64, 0x65):
        raise ConnectionError("the answer is not an LDAP search result")
    if items[1][0] == 0x65:  # SearchResultDone without an entry: the server refused the anonymous read
        code = _ber_items(items[1][1])[0][1]
        return {"detail": f"LDAP answered; anonymous root DSE read refused (result {int.from_bytes(code, 'big')})"}
    strings = _octet_strings(items[1][1])
    values: dict[str, list[str]] = {}
    name = None
    for text in strings[1:]:  # the first is the entry's DN, "" for the root DSE
        if text in ("namingContexts", "supportedLDAPVersion"):
            name = text
            values[name] = []
        elif name:
            values[name].append(text)
    contexts = ", ".join(values.get("namingContexts", [])) or "none"
    return {"detail": f"LDAP root DSE read; naming contexts {contexts}", **values}
