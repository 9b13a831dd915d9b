"""``python -m wsdemo``: serve, client, keys, token, users, tap, notebooks, course.

Every command has ``--help``. Errors are one line on stderr and a non-zero exit
status, never a traceback: 1 for a failure at run time (server down, refused),
2 for a mistake in the command line (argparse's own convention).

Why one file of this length: every command's options, their defaults and the
checks of what was typed sit together, so ``--help`` and the one-line errors
speak in one voice; the work itself is done by the package (``serve`` builds a
:class:`~wsdemo.server.app.ControlServer`, ``token`` calls :mod:`wsdemo.auth`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def port(text: str) -> int:
    """A port on the command line: 1-65535, or 0 to pick a free one (every command alike)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(
            f"port {number} is out of range: 1-65535, or 0 to pick a free one")
    return number


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """The one wording of "this address is not free", for every command."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # asyncio wraps the errno in a sentence of its own: the errno says it plainly
    return f"cannot listen on {where}: {os.strerror(exc.errno) if exc.errno else exc}"


def _size(text: str) -> int:
    """A size on the command line: 5000, 64K, 64M, 1G (powers of 1024)."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5000, 64K, 64M, 1G)"
                                         ) from None


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (5, 2.5, true, "x"), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wsdemo",
        description="The wsdemo control channel and course tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run a control server", description="Run a control server until Ctrl-C. "
        "Without --no-demo it exposes a demo room 'controls' (speed, gain, running, mode, "
        "label, colour) and a publish room 'chat'.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=port, default=8765,
                       help="port (8765; 0 picks a free one)")
    serve.add_argument("--no-demo", action="store_true", help="start with no demo controls")
    serve.add_argument("--log", default="wsdemo.sqlite", metavar="WHERE",
                       help="event log: a SQLite file (default wsdemo.sqlite; survives "
                       "restarts), 'memory' (nothing kept), or redis://HOST:PORT/DB (several "
                       "servers share rooms, order and presence)")
    serve.add_argument("--presence-ttl", type=float, default=15.0, metavar="SECONDS",
                       help="with a Redis log: seconds without a heartbeat before a "
                       "server's members count as gone (15)")
    serve.add_argument("--room", action="append", default=[], metavar="NAME",
                       help="add a publish room (repeatable)")
    secure = serve.add_argument_group(
        "authentication",
        "Without --secret-file, --public-key or --jwks the server is open: anyone who can "
        "connect may act. It then listens only on a loopback address unless --open says "
        "so on purpose.")
    secure.add_argument("--secret-file", metavar="PATH", type=Path,
                        help="HS256 keys (kid:base64url-secret a line, the first signs; see "
                        "'keys new'): every client must say hello with a token they signed")
    secure.add_argument("--public-key", action="append", default=[], metavar="PEM",
                        type=Path,
                        help="an identity provider's public key (RSA: RS256, EC P-256: "
                        "ES256, Ed25519: EdDSA; the key's type fixes the algorithm; kid = "
                        "the file's name without suffix); repeatable")
    secure.add_argument("--jwks", metavar="PATH", type=Path,
                        help="a JWKS document of public keys (RFC 7517), read again when "
                        "the file changes")
    secure.add_argument("--issuer", default=None, metavar="ISS",
                        help="the iss every token must carry (wsdemo)")
    secure.add_argument("--audience", default=None, metavar="AUD",
                        help="the aud every token must carry (wsdemo.v1)")
    secure.add_argument("--users", metavar="PATH", type=Path,
                        help="accounts for POST /token (scrypt hashes; see 'users add'); "
                        "needs --secret-file, whose first key signs their tokens")
    secure.add_argument("--open", action="store_true",
                        help="allow an open server on a non-loopback address (a warning is "
                        "logged)")
    where = serve.add_argument_group(
        "origins, host names and TLS",
        "A request must name this server in its Host header (a loopback name, an IP "
        "address, --host or a --public-name), else 403: a DNS-rebinding page is refused "
        "before the upgrade. Then a page's Origin must be in --origin, or without "
        "--origin be the server's own.")
    where.add_argument("--origin", action="append", default=None, metavar="URL",
                       help="a page origin allowed to connect, e.g. https://app.example "
                       "(repeatable; default: only the page's own origin)")
    where.add_argument("--public-name", action="append", default=[], metavar="NAME",
                       help="a host name clients use for this server, e.g. app.example "
                       "(repeatable)")
    where.add_argument("--certfile", metavar="PEM", type=Path,
                       help="TLS certificate chain: serve https:// and wss:// (with "
                       "--keyfile)")
    where.add_argument("--keyfile", metavar="PEM", type=Path, help="TLS private key")
    limits = serve.add_argument_group(
        "limits", "Each with its default; 0 turns it off where that makes sense.")
    limits.add_argument("--rate", type=float, default=100.0, metavar="PER_SECOND",
                        help="publish/set a second per connection (100; bursts of twice "
                        "that); past it 'error rate-limited', then close 4429; 0: no limit")
    limits.add_argument("--max-connections", type=int, default=100, metavar="N",
                        help="WebSocket connections per client address (100); past it the "
                        "upgrade gets 429; 0: no limit")
    limits.add_argument("--login-rate", type=float, default=10.0, metavar="PER_MINUTE",
                        help="POST /token attempts a minute per address (10, bursts of 5); "
                        "past it 429 with Retry-After")
    limits.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                        help="close a client that sent no message for this long with 1001 "
                        "(3600; pongs do not count); 0: never")
    limits.add_argument("--retain-events", type=int, default=None, metavar="N",
                        help="events kept per room in the log, the oldest dropped first "
                        "(the store's default: 10000 in memory, 1000000 in SQLite and Redis)")
    limits.add_argument("--retain-bytes", type=_size, default=None, metavar="SIZE",
                        help="bytes of events kept per room, e.g. 64M or 1G (64M); a publish "
                        "bigger than that is refused")
    limits.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="time to send a whole HTTP request head; a half-sent "
                        "handshake is dropped after it (10)")

    keys = commands.add_parser("keys", help="make a key file for serve --secret-file",
                               description="Key files for serve --secret-file and token.")
    keys_actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    keys_new = keys_actions.add_parser(
        "new", help="write a new key file (mode 0600; never overwrites)",
        description="Write a fresh 32-byte HS256 key as 'kid:base64url-secret', mode 0600.")
    keys_new.add_argument("path", type=Path)
    keys_new.add_argument("--kid", default="k1", help="the key id (k1)")

    token = commands.add_parser(
        "token", help="print a signed token for a user",
        description="Print a JWT for --sub, signed with the first key of --secret-file. "
        "Grants: --perm ROOM=ACTION[,ACTION...] (actions: read, publish, set; admin on * "
        "for /status; ROOM * is every room), repeatable.")
    token.add_argument("--secret-file", required=True, type=Path, metavar="PATH")
    token.add_argument("--sub", required=True, metavar="NAME", help="the user")
    token.add_argument("--perm", action="append", default=[], metavar="ROOM=ACTIONS",
                       help="e.g. 'controls=read,set' or '*=read' (repeatable)")
    token.add_argument("--ttl", type=float, default=900.0, metavar="SECONDS",
                       help="lifetime in seconds (900)")
    token.add_argument("--issuer", default=None, metavar="ISS", help="iss (wsdemo)")
    token.add_argument("--audience", default=None, metavar="AUD", help="aud (wsdemo.v1)")

    users = commands.add_parser("users", help="accounts for serve --users (POST /token)",
                                description="A users file for serve --users.")
    users_actions = users.add_subparsers(dest="users_action", required=True,
                                         metavar="ACTION")
    users_add = users_actions.add_parser(
        "add", help="add a user, or set a new password and grants (asks for the password)",
        description="Add NAME to the users file (made mode 0600 if new), or replace it. The "
        "password is asked for without echo; only its scrypt hash is stored. Grants as for "
        "'token': --perm ROOM=ACTION[,ACTION...], repeatable.")
    users_add.add_argument("path", type=Path)
    users_add.add_argument("name")
    users_add.add_argument("--perm", action="append", default=[], metavar="ROOM=ACTIONS",
                           help="e.g. 'controls=read,set' (repeatable)")
    users_add.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of standard input "
                           "(for scripts) instead of asking")

    client = commands.add_parser(
        "client", help="talk to a control server",
        description="Talk to a control server. URL: host:port, http://host:port/ or "
        "ws://host:port/ws.")
    client.add_argument("url", metavar="URL")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--room", default="controls", help="room (controls)")
    common.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    common.add_argument("--token-file", type=Path, metavar="PATH",
                        help="a file holding the token to say hello with (default: the "
                        "WSDEMO_TOKEN environment variable; never on the command line, "
                        "where other users see it in ps)")
    common.add_argument("--cafile", type=Path, metavar="PEM",
                        help="trust this certificate (authority) for wss://, e.g. a "
                        "self-signed one")
    actions = client.add_subparsers(dest="action", required=True, metavar="ACTION")
    watch = actions.add_parser("watch", help="print every event of the room, one JSON per line",
                               parents=[common],
                               description="Join the room, print its snapshot, then every event "
                               "as one JSON line, until Ctrl-C or --count events.")
    watch.add_argument("--count", type=int, default=0, help="stop after N events (0: never)")
    set_ = actions.add_parser("set", help="set a control: set TARGET VALUE", parents=[common],
                              description="Set one control and print the ack. VALUE is read as "
                              "JSON when it parses (5, 2.5, true, \"text\"), else as text.")
    set_.add_argument("target")
    set_.add_argument("value", type=_value)
    set_.add_argument("--id", help="message id (idempotency key; default: a new UUID)")
    publish = actions.add_parser("publish", help="publish data: publish DATA", parents=[common],
                                 description="Publish DATA (JSON, or text) to the room.")
    publish.add_argument("data", type=_value)
    publish.add_argument("--id", help="message id (idempotency key; default: a new UUID)")

    tap = commands.add_parser(
        "tap", help="record and decode a TCP connection (HTTP, then WebSocket frames)",
        description="A TCP proxy that prints every chunk between a client and a server, "
        "decoded: the HTTP upgrade, then the WebSocket frames.")
    tap.add_argument("--listen", type=port, required=True, metavar="PORT",
                     help="port to listen on (0 picks a free one)")
    tap.add_argument("--to", required=True, metavar="HOST:PORT", help="where to forward")
    tap.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")

    notebooks = commands.add_parser(
        "notebooks", help="regenerate the stored outputs of the course notebooks",
        description="Execute notebooks top to bottom and store their outputs (what nbval "
        "checks). Without arguments: every notebook in notebooks/.")
    notebooks.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all)")
    notebooks.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")

    bench = commands.add_parser(
        "bench", help="measure the channel against bare Tornado and websockets", add_help=False,
        description="Run the benchmark; `python -m wsdemo bench --help` lists its options.")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of the benchmark")

    course = commands.add_parser(
        "course", help="open the course in JupyterLab",
        description="Open JupyterLab on your own copy of the lessons, my-course/ (made on "
        "the first run, from notebooks/, which stays as the tests check it), rooted at the "
        "repository so the package is one click away; adds --allow-root when run as root. "
        "--reset copies the lessons afresh (your changes to them are lost). Other arguments "
        "go to jupyter lab.")
    course.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="passed to jupyter lab")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options, --help included
        from .bench.runner import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["course"] and not {"-h", "--help"} & set(argv[1:]):
        return _course(argv[1:])  # the rest are jupyter lab's own options
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "client":
            return asyncio.run(_client(args))
        if args.command == "tap":
            from .tap.proxy import main as tap_main

            try:
                return asyncio.run(tap_main(args.listen, args.to, args.host))
            except OSError as exc:
                raise RuntimeError(cannot_listen(args.host, args.listen, exc)) from None
        if args.command == "notebooks":
            return _notebooks(args)
        if args.command == "keys":
            from .auth.keyfile import write_new_key_file

            kid = write_new_key_file(args.path, args.kid)
            print(f"wrote key {kid!r} to {args.path} (mode 0600): keep it secret")
            return 0
        if args.command == "token":
            return _token(args)
        if args.command == "users":
            return _users(args)
        if args.command == "course":
            return _course(args.jupyter_args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def demo_controls() -> dict[str, Any]:
    """The widgets ``serve`` exposes by default (ipywidgets work without a kernel)."""
    import ipywidgets as w

    return {
        "speed": w.IntSlider(value=5, min=0, max=10, step=1, description="speed"),
        "gain": w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="gain"),
        "running": w.ToggleButton(value=False, description="running"),
        "mode": w.Dropdown(options=["idle", "sweep", "hold"], value="idle", description="mode"),
        "label": w.Text(value="hello", description="label"),
        "colour": w.ColorPicker(value="#1f77b4", description="colour"),
    }


async def _serve(args: argparse.Namespace) -> int:
    from .server.app import ControlServer
    from .stores import open_log

    retention = {k: v for k, v in (("max_events", args.retain_events),
                                   ("max_bytes", args.retain_bytes)) if v is not None}
    if any(v < 1 for v in retention.values()):
        raise RuntimeError("--retain-events and --retain-bytes must be at least 1")
    try:
        log = open_log(args.log, **retention)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    presence = None
    if getattr(log, "shared", False):  # several servers: share who is where, too
        import socket

        from .stores.redis_presence import RedisPresence

        presence = RedisPresence(args.log, f"{socket.gethostname()}-{os.getpid()}",
                                 ttl=args.presence_ttl)
    access = _access(args)
    if access is None and not _loopback(args.host):
        if not args.open:
            raise RuntimeError(
                f"refusing to serve {args.host} open: anyone who can reach it could act. "
                "Give --secret-file PATH (make one with 'keys new PATH') or --public-key/--jwks, "
                "or --open on purpose")
        logging.getLogger("wsdemo.cli").warning(
            "OPEN MODE on %s: no authentication, by --open", args.host)
    for option in ("rate", "max_connections", "idle_timeout"):
        if getattr(args, option) < 0:
            raise RuntimeError(f"--{option.replace('_', '-')} must be 0 (no limit) or more")
    for option in ("login_rate", "header_timeout"):
        if not getattr(args, option) > 0:
            raise RuntimeError(f"--{option.replace('_', '-')} must be more than 0")
    server = ControlServer(args.host, args.port, log=log, presence=presence, access=access,
                           allowed_origins=args.origin, rate_limit=args.rate or None,
                           public_names=args.public_name,
                           max_connections_per_address=args.max_connections or None,
                           login_rate=args.login_rate, idle_timeout=args.idle_timeout or None,
                           header_timeout=args.header_timeout, ssl_context=_tls(args))
    if not args.no_demo:
        for name, widget in demo_controls().items():
            server.expose(name, widget)
        server.add_room("chat")
    for room in args.room:
        server.add_room(room)
    try:
        server.start()
    except OSError as exc:
        raise RuntimeError(cannot_listen(args.host, args.port, exc)) from None
    print(f"wsdemo control server on {server.url}  (WebSocket {server.ws_url})", flush=True)
    print(f"rooms: {', '.join(server.rooms) or 'none'}; event log: {args.log}; "
          "Ctrl-C stops it", flush=True)
    try:
        await _until_signal()
    finally:
        await server.stop()
    return 0


def _access(args: argparse.Namespace) -> Any:
    """The JWT access the options ask for, or None for an open server."""
    if args.secret_file is None and not args.public_key and args.jwks is None:
        if args.users is not None:
            raise RuntimeError("--users needs --secret-file: its first key signs the tokens")
        return None
    from .auth import JWTAccess
    from .auth.keyfile import read_key_file

    options: dict[str, Any] = {}
    if args.issuer is not None:
        options["issuer"] = args.issuer
    if args.audience is not None:
        options["audience"] = args.audience
    try:
        keys = read_key_file(args.secret_file) if args.secret_file is not None else None
        public = _public_keys(args)
        if public is not None:
            options["public_keys"] = public
        access = JWTAccess(keys, **options)
        if args.users is not None:
            if keys is None:
                raise ValueError("--users needs --secret-file: its first key signs the tokens")
            from .auth.users import load_users_file

            load_users_file(args.users, access)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    return access


def _public_keys(args: argparse.Namespace) -> Any:
    if not args.public_key and args.jwks is None:
        return None
    from .auth.public import PublicKeys

    return PublicKeys(pem_files=args.public_key,
                      jwks_files=[args.jwks] if args.jwks is not None else [])


def _tls(args: argparse.Namespace) -> Any:
    if args.certfile is None and args.keyfile is None:
        return None
    if args.certfile is None or args.keyfile is None:
        raise RuntimeError("TLS needs both --certfile and --keyfile")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"cannot use {args.certfile} and {args.keyfile} for TLS: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(args: argparse.Namespace) -> int:
    from .auth import issue_token
    from .auth.keyfile import read_key_file

    options = {k: v for k, v in (("issuer", args.issuer), ("audience", args.audience))
               if v is not None}
    try:
        print(issue_token(args.sub, _grants(args.perm), keys=read_key_file(args.secret_file),
                          ttl=args.ttl, **options))
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    return 0


def _grants(perms: list[str]) -> dict[str, list[str]]:
    grants: dict[str, list[str]] = {}
    for perm in perms:
        room, sep, actions = perm.partition("=")
        if not sep or not room or not actions:
            raise RuntimeError(f"--perm {perm!r}: write ROOM=ACTION[,ACTION...]")
        grants.setdefault(room, []).extend(a.strip() for a in actions.split(","))
    return grants


def _users(args: argparse.Namespace) -> int:
    from .auth.users import add_user_to_file

    grants = _grants(args.perm)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise RuntimeError("the two passwords differ; nothing written")
    if not password:
        raise RuntimeError("an empty password; nothing written")
    try:
        replaced = add_user_to_file(args.path, args.name, password, grants)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    print(f"{'replaced' if replaced else 'added'} {args.name!r} in {args.path} (mode 0600)")
    return 0


async def _client(args: argparse.Namespace) -> int:
    from .client.connection import ControlClient, ServerError

    token = os.environ.get("WSDEMO_TOKEN") or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise RuntimeError(f"token file {args.token_file}: {exc.strerror or exc}") from None
    context = None
    if args.cafile is not None:
        import ssl

        try:
            context = ssl.create_default_context(cafile=str(args.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise RuntimeError(f"--cafile {args.cafile}: {getattr(exc, 'strerror', None) or exc}"
                               ) from None
    client = await ControlClient.connect(args.url, client="cli", timeout=args.timeout,
                                         token=token, ssl_context=context)
    try:
        try:
            snapshot = await client.join(args.room)
        except ServerError as exc:
            raise RuntimeError(str(exc)) from None
        if args.action == "watch":
            print(json.dumps(snapshot), flush=True)
            count = 0
            watcher = asyncio.ensure_future(_print_events(client, args.room, args.count))
            stopper = asyncio.ensure_future(_until_signal())
            done, _ = await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            watcher.cancel()
            if watcher in done:
                count = watcher.result()
            return 0 if args.count == 0 or count >= args.count else 1
        try:
            if args.action == "set":
                reply = await client.set(args.room, args.target, args.value, id=args.id)
            else:
                reply = await client.publish(args.room, args.data, id=args.id)
        except ServerError as exc:
            raise RuntimeError(str(exc)) from None
        print(json.dumps(reply), flush=True)
        return 0
    finally:
        await client.close()


async def _print_events(client: Any, room: str, count: int) -> int:
    seen = 0
    while count == 0 or seen < count:
        try:
            event = await client.next_event(room, timeout=3600)
        except TimeoutError:
            continue
        print(json.dumps(event), flush=True)
        seen += 1
    return seen


def _notebooks(args: argparse.Namespace) -> int:
    from .course import execute_notebooks

    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    failed = execute_notebooks(paths, timeout=args.timeout)
    return 1 if failed else 0


COPY = ROOT / "my-course"  # the learner's copy of the lessons (git-ignored)


def learners_copy(copy: Path = COPY, *, reset: bool = False) -> list[str]:
    """Make (or complete) the learner's copy of ``notebooks/``; returns what was copied.

    The stored notebooks are what strict nbval checks: JupyterLab autosaves a
    notebook a learner ran (new ports, new widget ids), so the course opens a
    copy instead, and the two README commands never fight. A notebook already in
    the copy is kept (it is the learner's work) unless ``reset``.
    """
    copy.mkdir(parents=True, exist_ok=True)
    copied = []
    for lesson in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = copy / lesson.name
        if reset or not target.exists():
            shutil.copyfile(lesson, target)
            copied.append(lesson.name)
    return copied


def _course(jupyter_args: list[str]) -> int:
    reset = "--reset" in jupyter_args
    jupyter_args = [a for a in jupyter_args if a != "--reset"]
    copy = Path(os.environ.get("WSDEMO_COURSE_COPY", COPY)).resolve()
    copied = learners_copy(copy, reset=reset)
    # Rooted where both the lessons and the package show, so a lesson's "see
    # wsdemo/server/app.py" is one click in the file browser.
    root = Path(os.path.commonpath([ROOT, copy]))
    index = (copy / "00-index.ipynb").relative_to(root)
    print(f"your copy of the lessons: {copy} ({len(copied)} notebook(s) copied now; "
          "notebooks/ stays as the tests check it; --reset starts over)", flush=True)
    # This Python's JupyterLab, not the first `jupyter` on PATH: the README runs
    # `.venv/bin/python -m wsdemo course` without activating the venv.
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", str(index)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    command += jupyter_args
    print("running:", " ".join(command), flush=True)
    os.execv(command[0], command)
    return 0  # not reached
