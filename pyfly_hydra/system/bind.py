"""Where the server listens, checked before any server starts: host:port, a unix socket, or an fd.

Granian sets SO_REUSEPORT, so a second granian on a busy port silently *shares* it; probing with a
plain socket (SO_REUSEADDR only, as every server sets) catches a port held by anyone. A unix socket
path must lie in an existing directory and not be in use: a socket file is stale, and removed, only
when connecting to it is refused (nobody listens); any other failure (another user's socket we may
not connect to) leaves it alone and refuses the run. An
inherited fd must be a listening stream socket; under systemd socket activation (``LISTEN_FDS`` and
``LISTEN_PID`` naming this process) it must be one of the sockets passed, and the variables are
removed so the server's own workers do not take them for theirs.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from pyfly_hydra.errors import ConfigError


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, inheritable TCP socket for servers whose workers share one listener.

    Created with ``proto=IPPROTO_TCP``: asyncio enables TCP_NODELAY only on sockets whose ``proto``
    says TCP, and uvicorn's own ``socket.socket(family)`` (proto 0) leaves its asyncio workers with
    Nagle on, stalling each response ~40 ms on the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("server.port", port, f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def datagram_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` with SO_REUSEPORT, one per worker (HTTP/3's QUIC): the kernel hands each
    client's datagrams (by address and port) to one of them, where a socket the workers shared would scatter one
    connection's packets among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def ensure_bindable(host: str, port: int, *, datagram: bool = False) -> None:
    """Raise ConfigError naming ``server.port`` or ``server.host`` when ``host:port`` cannot be bound (TCP, or UDP
    with ``datagram``: HTTP/3's port, probed without SO_REUSEPORT so a port held by anyone counts)."""
    kind = socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM
    protocol = "UDP " if datagram else ""
    try:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError("server.host", host, f"cannot be resolved ({exc.strerror})") from None
    except (UnicodeError, ValueError):
        raise ConfigError("server.host", host, "is not a valid IP address or host name") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if not datagram:  # UDP sockets share a port under SO_REUSEADDR: the probe sets nothing
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            if not datagram:
                probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                in_use = f"{protocol}{host}:{port} is already in use; choose a free port"
                raise ConfigError("server.port", port, in_use) from None
            if exc.errno == errno.EACCES:
                raise ConfigError("server.port", port, "permission denied; ports below 1024 need privileges") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError("server.host", host, "is not an address of this machine") from None
            raise ConfigError("server.host", host, f"cannot bind {host}:{port}: {exc.strerror}") from None


SD_LISTEN_FDS_START = 3
MAX_GID = 2**32 - 1  # (gid_t)-1 means "unchanged" to chown
PROBE_TIMEOUT = 2.0  # seconds a connect to an existing socket file may take


def parse_permissions(value: str | None) -> int | None:
    """``"660"`` or ``"0o660"`` as a file mode; ConfigError naming ``server.uds_permissions`` otherwise."""
    if value is None:
        return None
    digits = value.removeprefix("0o")
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise ConfigError("server.uds_permissions", value, 'must be an octal file mode, e.g. "660"')
    return int(digits, 8)


def parse_group(value: str | None) -> int | None:
    """``server.uds_group`` (a group name or a numeric gid) as a gid this process may give a file to."""
    if value is None:
        return None
    try:
        import grp
    except ImportError:  # not a POSIX system: no unix sockets either
        raise ConfigError("server.uds_group", value, "file groups exist on POSIX systems only") from None
    if value.isascii() and value.isdigit():
        gid = int(value)
        if gid >= MAX_GID:
            raise ConfigError("server.uds_group", value, f"a numeric gid is 0..{MAX_GID - 1}")
    else:
        try:
            gid = grp.getgrnam(value).gr_gid
        except (KeyError, ValueError):
            raise ConfigError("server.uds_group", value, "no such group; give a group name or a numeric gid") from None
    if os.geteuid() != 0 and gid not in {os.getegid(), *os.getgroups()}:
        raise ConfigError("server.uds_group", value, "this user is not in that group, so cannot give it the socket")
    return gid


def check_uds(path: str) -> None:
    """Refuse a unix socket path that cannot be bound; remove a stale socket file left by a dead server.

    Only ECONNREFUSED proves nobody listens: EACCES or EPERM is what another user's live socket gives,
    and unlinking it would take that user's service over.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError("server.uds", path, f"no such directory ({directory})")
    if len(os.fsencode(os.path.abspath(path))) >= 104:
        raise ConfigError("server.uds", path, "is too long for a unix socket path (at most 103 bytes)")
    if not os.path.lexists(path):
        return
    if not _is_socket_file(path):
        raise ConfigError("server.uds", path, "exists and is not a socket; choose another path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)  # a listener with a full backlog must not hang the start
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            _remove_stale(path)
            return
        except FileNotFoundError:
            return  # removed meanwhile: nothing to replace
        except (BlockingIOError, TimeoutError):
            pass  # a listener too busy to accept: in use
        except OSError as exc:
            raise ConfigError(
                "server.uds",
                path,
                f"cannot tell whether it is in use ({exc.strerror}): perhaps another user's server; left as it is,"
                " choose another path",
            ) from None
    raise ConfigError("server.uds", path, "is in use by another server")


def _remove_stale(path: str) -> None:
    """Unlink a socket file nobody listens on (another user's, in a sticky directory, cannot be: one line)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(
            "server.uds", path, f"is a stale socket file that cannot be removed ({exc.strerror})"
        ) from None


def set_socket_access(path: str, *, permissions: int | None, group: int | None) -> None:
    """Give the socket file at ``path`` its group, then its mode (so the mode never applies to another group)."""
    if group is not None:
        os.chown(path, -1, group)
    if permissions is not None:
        os.chmod(path, permissions)


def unix_socket(path: str, *, permissions: int | None, group: int | None) -> socket.socket:
    """A bound, inheritable unix stream socket at ``path``, with ``group`` and ``permissions`` when given."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    set_socket_access(path, permissions=permissions, group=group)
    sock.set_inheritable(True)
    return sock


def _is_socket_file(path: str) -> bool:
    return os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode)


def remove_unix_socket(path: str | None) -> None:
    """Remove the socket file a server listened on, once it has stopped."""
    if path is not None and _is_socket_file(path):
        os.unlink(path)


def check_fd(fd: int) -> None:
    """Refuse an fd that is not an inherited listening stream socket (and claim systemd's, if passed)."""
    passed = os.environ.get("LISTEN_FDS")
    if passed is not None and os.environ.get("LISTEN_PID") == str(os.getpid()):
        count = int(passed) if passed.isdigit() else 0
        if not SD_LISTEN_FDS_START <= fd < SD_LISTEN_FDS_START + count:
            last = SD_LISTEN_FDS_START + count - 1
            raise ConfigError("server.fd", fd, f"systemd passed {count} socket(s), fds {SD_LISTEN_FDS_START}..{last}")
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise ConfigError("server.fd", fd, "is not an open file descriptor of this process") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError("server.fd", fd, "is not a socket")
    with socket.socket(fileno=os.dup(fd)) as sock:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ConfigError("server.fd", fd, "is not a listening stream socket (call listen() before passing it)")


def inherited_socket(fd: int) -> socket.socket:
    """A socket object for the inherited listening ``fd`` (family and type read from the socket itself)."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(True)
    return sock


def check_listener(*, host: str, port: int, uds: str | None, fd: int | None) -> None:
    """Raise ConfigError when the configured listener (unix socket, fd, or host:port) cannot be used."""
    if uds is not None:
        check_uds(uds)
    elif fd is not None:
        check_fd(fd)
    else:
        ensure_bindable(host, port)
