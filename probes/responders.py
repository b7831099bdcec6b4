"""Real services on loopback for the probes to find: each case a probe must tell apart.

The tests serve them, and `manage.py demo_responders` (started by `make run`) serves a few
for the demo. They run in an event loop on a thread of the calling process, so a Celery
worker in another process probes them over real sockets. Every address is on 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket(family(host), kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def self_signed(common_name: str, issuer_name: str | None = None) -> tuple[Path, Path, str]:
    """A certificate and key in files, and the certificate's public key pin."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name or common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="probe-cert-"))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_path, key_path, "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Listeners:
    """A background event loop serving test services; close() stops them all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.closers: list[Callable[[], None]] = []
        self.held: list[socket.socket] = []
        self.accepted: dict[tuple[str, int], int] = {}

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def close(self) -> None:
        """Stop every service and free its port before returning."""

        async def close_all() -> None:
            for close in self.closers:
                close()
            await asyncio.sleep(0.05)  # let the transports finish closing

        self._call(close_all())
        for sock in self.held:
            sock.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _tcp(self, host: str, handler, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> int:
        async def start():
            return await asyncio.start_server(handler, host, port, ssl=ssl_context, backlog=1024)

        server = self._call(start())
        self.closers.append(server.close)
        return server.sockets[0].getsockname()[1]

    def _udp(self, host: str, answer: Callable[[bytes], bytes | None], port: int = 0) -> int:
        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                reply = answer(data)
                if reply is not None:
                    self.transport.sendto(reply, addr)

        async def start():
            transport, _ = await self.loop.create_datagram_endpoint(Protocol, local_addr=(host, port))
            return transport

        transport = self._call(start())
        self.closers.append(transport.close)
        return transport.get_extra_info("sockname")[1]

    # --- The cases ----------------------------------------------------------------

    def open_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Accepts and closes: a service answered. Counts the connections in `accepted`."""

        async def handle(reader, writer):
            self.accepted[(host, port)] = self.accepted.get((host, port), 0) + 1
            writer.close()

        return self._tcp(host, handle, port)

    def filtered(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """A listener whose accept queue is full: the kernel drops further SYNs, as a DROP rule does."""
        server = socket.socket(family(host))
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(0)
        port = server.getsockname()[1]
        self.held.append(server)
        for _ in range(3):
            client = socket.socket(family(host))
            client.setblocking(False)
            client.connect_ex((host, port))
            self.held.append(client)
        return port

    def smtp(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        banner: str = "220 mx.example.test ESMTP ready",
        starttls=True,
        extensions: list[str] | None = None,
        ehlo_reply: str | None = None,
        starttls_reply: str = "220 2.0.0 Ready to start TLS",
        tls: tuple[Path, Path] | None = None,
    ) -> int:
        """A mail server; `extensions`, `ehlo_reply` and `starttls_reply` play what an inspecting
        firewall makes of its answers, `tls` (a certificate and key) what STARTTLS leads to."""
        if extensions is None:
            extensions = ["PIPELINING", *(["STARTTLS"] if starttls else []), "8BITMIME"]
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)

        async def handle(reader, writer):
            writer.write(banner.encode() + b"\r\n")
            while line := await reader.readline():
                command = line.upper().strip()
                if command.startswith(b"EHLO"):
                    lines = [ehlo_reply] if ehlo_reply else ["mx.example.test", *extensions]
                    reply = [f"250-{text}" for text in lines[:-1]] + [f"250 {lines[-1]}"] if not ehlo_reply else lines
                    writer.write("\r\n".join(reply).encode() + b"\r\n")
                elif command == b"STARTTLS":
                    writer.write(starttls_reply.encode() + b"\r\n")
                    await writer.drain()
                    if context and starttls_reply.startswith("220"):
                        with contextlib.suppress(ConnectionError, ssl.SSLError):
                            await writer.start_tls(context)
                elif command.startswith(b"QUIT"):
                    writer.write(b"221 bye\r\n")
                    break
            writer.close()

        return self._tcp(host, handle, port)

    def tls_broken(self, how: str, host: str = "127.0.0.1", port: int = 0) -> int:
        """Takes the ClientHello, then: "reset" (an RST), "close" (a FIN), "plain" (answers
        something that is not TLS) or "hang" (nothing, until the client closes), as devices that block, hold or
        do not speak TLS do."""

        async def handle(reader, writer):
            await reader.read(512)
            sock = writer.get_extra_info("socket")
            if how == "hang":
                await reader.read()  # until the probe gives up and closes
            if how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "plain":
                writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                await writer.drain()
            writer.close()

        return self._tcp(host, handle, port)

    def tls(self, cert: Path, key: Path, host: str = "127.0.0.1", port: int = 0) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        async def handle(reader, writer):
            await reader.read(100)
            writer.close()

        return self._tcp(host, handle, port, ssl_context=context)

    def dns(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """A DNS server answering REFUSED-free NOERROR with one answer, on UDP and TCP of one port."""

        def reply(query: bytes) -> bytes:
            (query_id,) = struct.unpack("!H", query[:2])
            return struct.pack("!HHHHHH", query_id, 0x8180, 1, 1, 0, 0) + query[12:] + b"\x00" * 4

        async def handle(reader, writer):
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            answer = reply(await reader.readexactly(length))
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()
            writer.close()

        port = self._tcp(host, handle, port)
        self._udp(host, reply, port)
        return port

    def sql_browser(self, host: str = "127.0.0.1", port: int = 0) -> int:
        def answer(request: bytes) -> bytes | None:
            if request[:1] not in (b"\x02", b"\x03"):
                return None
            text = b"ServerName;SQL1;InstanceName;MSSQLSERVER;IsClustered;No;Version;16.0.1000.6;tcp;1433;;"
            return b"\x05" + struct.pack("<H", len(text)) + text

        return self._udp(host, answer, port)

    def ldap(self, host: str = "127.0.0.1", port: int = 0) -> int:
        def ber(tag: int, content: bytes) -> bytes:
            return bytes([tag, len(content)]) + content

        async def handle(reader, writer):
            await reader.read(200)
            attribute = ber(0x30, ber(0x04, b"namingContexts") + ber(0x31, ber(0x04, b"dc=example,dc=test")))
            entry = ber(0x64, ber(0x04, b"") + ber(0x30, attribute))
            done = ber(0x65, ber(0x0A, b"\x00") + ber(0x04, b"") + ber(0x04, b""))
            writer.write(ber(0x30, ber(0x02, b"\x01") + entry) + ber(0x30, ber(0x02, b"\x01") + done))
            await writer.drain()
            writer.close()

        return self._tcp(host, handle, port)
