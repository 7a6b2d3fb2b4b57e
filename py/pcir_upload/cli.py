"""`pcir-upload`: the repository operator's commands (keygen, serve, unpack, deidentify, review, list)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pcir_upload.repository.receive.connections import ConnectionLimits
from pcir_upload.repository.receive.limits import DAY, Limits, format_size, parse_size
from pcir_upload.repository.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, keygen, load_private_keys, load_public_keys


def _site_dir() -> Path:
    """The built page: $PCIR_SITE, else dist/ of the source tree this package runs from."""
    configured = os.environ.get("PCIR_SITE")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "dist"


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        private_path, public_path = keygen(args.out)
    except FileExistsError as exc:
        print(f"pcir-upload keygen: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {private_path} (keep it secret; it opens every contribution)")
    print(f"public key:  {public_path}")
    return 0


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        quota=args.quota, reserve=args.reserve, client_creations=args.client_creations,
        client_uploads=args.client_uploads, secret_uploads=args.secret_uploads,
        expire_after=args.expire_after * DAY, keep_completed=args.keep_completed * DAY,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from pcir_upload.repository.receive.app import normalize_origin, run
    from pcir_upload.repository.receive.connections import accept_backlog, connection_cap, open_file_limit

    for origin in args.allow_origin:
        if normalize_origin(origin) is None:
            print(f"pcir-upload serve: --allow-origin {origin!r} is not scheme://host[:port]", file=sys.stderr)
            return 1
    site = _site_dir()
    if not (site / "index.html").is_file():
        print(f"pcir-upload serve: the page is not built ({site}); run `python build.py`", file=sys.stderr)
        return 1
    public_key_path = args.public_key or args.data / PUBLIC_KEY_NAME
    if args.public_key is None and not public_key_path.exists():
        private_path, _ = keygen(args.data)
        print(f"Created a new key pair. The private key is {private_path.resolve()}")
        print("  Keep it safe, and better off this server: only `pcir-upload unpack` needs it.")
    try:
        keys = load_public_keys(public_key_path)
    except (OSError, ValueError) as exc:
        print(f"pcir-upload serve: cannot use the public key {public_key_path}: {exc}", file=sys.stderr)
        return 1
    if keys.hybrid is None:
        print("No hybrid (post-quantum) public key: every contribution is sealed with X25519 alone.")
    files = open_file_limit()
    cap = connection_cap(args.max_connections, files)
    if cap < args.max_connections:
        print(f"At most {cap} connections at once: the open-file limit is {files} (ulimit -n).")
    connections = ConnectionLimits(
        idle_timeout=args.idle_timeout, header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, max_connections=cap, head_memory=args.head_memory,
        backlog=accept_backlog(cap, files),
    )
    if args.store is not None:
        try:
            from pcir_upload.repository.receive.s3keys import S3Location

            S3Location.parse(args.store)
        except ValueError as exc:
            print(f"pcir-upload serve: --store: {exc}", file=sys.stderr)
            return 1
        if args.redis is None:
            print("pcir-upload serve: --store s3://... needs --redis (the receivers' shared state)", file=sys.stderr)
            return 1
    where = args.store or f"data in {args.data.resolve()}"
    print(f"Serving the contribution page on http://{args.host}:{args.port}/ ({where})")
    run(args.data, site, keys.classical, keys.hybrid, args.host, args.port, args.allow_origin,
        limits=_limits(args), connections=connections, trusted_proxies=args.trusted_proxy,
        store_url=args.store, s3_endpoint=args.s3_endpoint, redis_url=args.redis)
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from pcir_upload.repository.unpack import unpack_all

    try:
        private_keys = load_private_keys(args.private_key)
    except (OSError, ValueError) as exc:
        print(f"pcir-upload unpack: cannot use the private key {args.private_key}: {exc}", file=sys.stderr)
        return 1
    ok = unpack_all(args.data, private_keys, args.out)
    return 0 if ok else 1


def _source(command: str, store: str, s3_endpoint: str | None):
    from pcir_upload.repository.completed import source_for

    try:
        return source_for(store, s3_endpoint)
    except ValueError as exc:
        print(f"pcir-upload {command}: {exc}", file=sys.stderr)
        return None


def cmd_enqueue(args: argparse.Namespace) -> int:
    from redis import Redis

    from pcir_upload.repository.jobs import enqueue

    source = _source("enqueue", args.store, args.s3_endpoint)
    if source is None:
        return 1
    counts = enqueue(source, Redis.from_url(args.redis))
    print(f"{counts.added} job(s) added, {counts.known} known already"
          + (f", {counts.gone} listed but not complete" if counts.gone else ""))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from redis import Redis

    from pcir_upload.repository.jobs import Setup, run_worker

    if args.heartbeat < 1:
        print("pcir-upload worker: --heartbeat is a whole number of seconds, at least 1", file=sys.stderr)
        return 1
    source = _source("worker", args.store, args.s3_endpoint)
    if source is None:
        return 1
    try:
        private_keys = load_private_keys(args.private_key)
    except (OSError, ValueError) as exc:
        print(f"pcir-upload worker: cannot use the private key {args.private_key}: {exc}", file=sys.stderr)
        return 1
    deidentify = None
    if (args.deidentify_out is None) != (args.secret is None):
        print("pcir-upload worker: --deidentify-out and --secret go together", file=sys.stderr)
        return 1
    if args.secret is not None:
        from pcir_upload.repository.deidentify.secret import SecretError, load_secret
        from pcir_upload.repository.jobs import Deidentify

        try:
            deidentify = Deidentify(args.deidentify_out, load_secret(args.secret, create=False))
        except (OSError, SecretError) as exc:
            print(f"pcir-upload worker: cannot use the secret {args.secret}: {exc}", file=sys.stderr)
            return 1
    run_worker(Setup(source, private_keys, args.out, deidentify), Redis.from_url(args.redis),
               heartbeat=args.heartbeat, burst=args.burst, name=args.name)
    return 0


def cmd_deidentify(args: argparse.Namespace) -> int:
    from pcir_upload.repository.deidentify.run import deidentify_all
    from pcir_upload.repository.deidentify.secret import SecretError, load_secret

    try:
        secret = load_secret(args.secret)
    except (OSError, SecretError) as exc:
        print(f"pcir-upload deidentify: cannot use the secret {args.secret}: {exc}", file=sys.stderr)
        return 1
    if not args.inp.is_dir():
        print(f"pcir-upload deidentify: {args.inp} is not a folder", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    return 0 if deidentify_all(args.inp, args.out, secret) else 1


def cmd_review(args: argparse.Namespace) -> int:
    import uvicorn

    from pcir_upload.repository.review.app import app
    from pcir_upload.repository.review.auth import new_token

    if not (args.out / "review").is_dir():
        print(f"pcir-upload review: {args.out} has no review/ folder; run `pcir-upload deidentify` first", file=sys.stderr)
        return 1
    if args.password_file:
        secret = args.password_file.read_text(encoding="utf-8").strip()
        if len(secret) < 12:
            print("pcir-upload review: the password must be at least 12 characters", file=sys.stderr)
            return 1
    else:
        secret = new_token()
        print(f"Review token: {secret}")
    application = app(args.out, secret, args.inp)
    if args.host in ("127.0.0.1", "localhost", "::1"):
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        # On loopback only loopback names: a page elsewhere that rebinds its name to
        # 127.0.0.1 gets a 400, not the review page.
        application.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"])
    waiting = len(application.state.review.index.contributions)
    print(f"Reviewing {waiting} contribution(s) of {args.out.resolve()} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(application, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from pcir_upload.repository.receive.ledger import table

    print(table(args.data))
    return 0


def _serve_limits(p: argparse.ArgumentParser) -> None:
    """What anyone may hold on the receiver, and for how long (README: Putting the receiver
    on the internet)."""
    limits, conn = Limits(), ConnectionLimits()
    store = p.add_argument_group("storage", "sizes take K, M, G, T (binary): 500G")
    store.add_argument("--store", metavar="s3://BUCKET/PREFIX",
                       help="keep uploads on an S3-compatible object store instead of DATA/uploads, so "
                       "several receivers can serve one contribution (credentials from AWS_ACCESS_KEY_ID, "
                       "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; docs/SCALING.md)")
    store.add_argument("--s3-endpoint", metavar="URL", default=os.environ.get("AWS_ENDPOINT_URL"),
                       help="the object store's S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    store.add_argument("--redis", metavar="URL", default=os.environ.get("PCIR_REDIS_URL"),
                       help="redis://host:port/db where receivers on one --store share who is writing "
                       "what (default: $PCIR_REDIS_URL)")
    store.add_argument("--quota", type=_size, default=limits.quota, metavar="SIZE",
                       help="bytes all uploads may hold together, declared lengths counted from "
                       f"creation (default: {format_size(limits.quota)}); past it, 507")
    store.add_argument("--reserve", type=_size, default=limits.reserve, metavar="SIZE",
                       help="free disk space never used for uploads "
                       f"(default: {format_size(limits.reserve)}); past it, 507")
    store.add_argument("--expire-after", type=float, default=limits.expire_after / DAY, metavar="DAYS",
                       help="an unfinished upload is deleted this long after its last write "
                       f"(default: {limits.expire_after / DAY:g})")
    store.add_argument("--keep-completed", type=float, default=limits.keep_completed / DAY, metavar="DAYS",
                       help="a completed upload is deleted this long after it completed: run unpack "
                       f"well within it; 0 keeps them (default: {limits.keep_completed / DAY:g})")
    clients = p.add_argument_group("clients", "a client is a remote address (see --trusted-proxy); "
                                   "a contribution is one Pcir-Upload-Secret; past a limit, 429 and Retry-After")
    clients.add_argument("--client-creations", type=int, default=limits.client_creations, metavar="N",
                         help=f"uploads one client may start per minute (default: {limits.client_creations})")
    clients.add_argument("--client-uploads", type=int, default=limits.client_uploads, metavar="N",
                         help="uploads one client may have unfinished at once "
                         f"(default: {limits.client_uploads})")
    clients.add_argument("--secret-uploads", type=int, default=limits.secret_uploads, metavar="N",
                         help="uploads one contribution may have unfinished at once "
                         f"(default: {limits.secret_uploads})")
    clients.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                         help="a reverse proxy whose X-Forwarded-For and X-Forwarded-Proto are believed "
                         "(an address or network, repeatable; default: none, the peer is the client)")
    net = p.add_argument_group("connections")
    net.add_argument("--idle-timeout", type=float, default=conn.idle_timeout, metavar="S",
                     help=f"close a connection with no request and no byte for S seconds (default: {conn.idle_timeout:g})")
    net.add_argument("--header-timeout", type=float, default=conn.header_timeout, metavar="S",
                     help=f"answer 408 to a request head not complete in S seconds (default: {conn.header_timeout:g})")
    net.add_argument("--body-timeout", type=float, default=conn.body_timeout, metavar="S",
                     help="cut a request body that brings no byte for S seconds; a PATCH keeps what "
                     f"arrived (default: {conn.body_timeout:g})")
    net.add_argument("--max-connections", type=int, default=conn.max_connections, metavar="N",
                     help="connections at once, lowered to fit the open-file limit; a new one closes the "
                     f"longest idle, or gets 503 (default: {conn.max_connections})")
    net.add_argument("--head-memory", type=_size, default=conn.head_memory, metavar="SIZE",
                     help="what pending request heads beyond 16K each may hold together; past it, 503 "
                     f"(default: {format_size(conn.head_memory)})")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pcir-upload",
        description="The repository side of pcir-upload: keys, the receiving server, unpacking.",
    )
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("keygen", help="make the repository's key pair",
                            description="Write DIR/private_key.pem (mode 0600) and DIR/public_key.pem: an "
                            "X25519 key pair, and beside it a hybrid post-quantum pair (X-Wing: ML-KEM-768 + X25519).")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=cmd_keygen)

    p = commands.add_parser("serve", help="serve the contribution page and receive uploads",
                            description="Serve the contribution page and its upload endpoint. With no "
                            "options: 127.0.0.1:8000, data in ./pcir-data, a key pair made there on first run.")
    p.add_argument("--data", type=Path, default=Path("pcir-data"), metavar="DIR",
                   help="where uploads (and, by default, the keys) are kept (default: ./pcir-data)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--public-key", type=Path, metavar="FILE",
                   help=f"the public key the page seals to (default: DATA/{PUBLIC_KEY_NAME})")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages of ORIGIN (scheme://host[:port]) upload here too, through CORS; "
                   "repeatable (default: only this server's own page)")
    _serve_limits(p)
    p.set_defaults(run=cmd_serve)

    p = commands.add_parser("unpack", help="decrypt, verify and unpack completed contributions",
                            description="For every completed upload in DATA: OUT/<contribution id>/files/... "
                            "and OUT/<contribution id>/manifest.json. Every chunk and every file's "
                            "SHA-256 is verified; contributions already unpacked are skipped.")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="the server's data folder")
    p.add_argument("--private-key", type=Path, required=True, metavar="FILE",
                   help=f"the repository's private key ({PRIVATE_KEY_NAME})")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="where to write contributions")
    p.set_defaults(run=cmd_unpack)

    store_help = ("the receiver's data folder, or s3://BUCKET/PREFIX for an S3 store (credentials from "
                  "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)")

    def store_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", required=True, metavar="STORE", help=store_help)
        p.add_argument("--s3-endpoint", metavar="URL", default=os.environ.get("AWS_ENDPOINT_URL"),
                       help="the object store's S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
        p.add_argument("--redis", required=True, metavar="URL", help="the queue's Redis: redis://host:port/db")

    p = commands.add_parser("enqueue", help="queue one unpack job per completed upload (RQ on Redis)",
                            description="List the completed uploads of STORE and add an unpack job for each "
                            "one the queue has not seen, its id the upload id; safe to run often, from "
                            "anywhere. `pcir-upload worker` runs the jobs (docs/SCALING.md).")
    store_arguments(p)
    p.set_defaults(run=cmd_enqueue)

    p = commands.add_parser("worker", help="run queued unpack (and deidentify) jobs (several may run, on several machines)",
                            description="Take unpack jobs from the queue and unpack each upload from STORE "
                            "into OUT, as `unpack` does, and with --deidentify-out each unpacked contribution into "
                            "DIR, as `deidentify` does: every attempt in a scratch folder of its own, moved "
                            "into place when whole. A job whose worker dies is run again by another. OUT and DIR "
                            "are shared by all workers (docs/SCALING.md). SIGTERM stops after the current job.")
    store_arguments(p)
    p.add_argument("--private-key", type=Path, required=True, metavar="FILE",
                   help=f"the repository's private key ({PRIVATE_KEY_NAME})")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="where to write contributions")
    p.add_argument("--deidentify-out", type=Path, metavar="DIR",
                   help="also de-identify each contribution once unpacked, as a job of its own, into DIR "
                   "(as `deidentify --out DIR` does; needs --secret)")
    p.add_argument("--secret", type=Path, metavar="FILE",
                   help="the repository's de-identification secret, made before (by `deidentify`): the same "
                   "file on every worker; a worker never makes one")
    p.add_argument("--heartbeat", type=int, default=10, metavar="S",  # jobs.HEARTBEAT, unimported (rq is slow to import)
                   help="seconds between a running job's heartbeats; a job that misses two is run "
                   "again elsewhere (default: 10)")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.add_argument("--name", help="the worker's name in Redis (default: a random one)")
    p.set_defaults(run=cmd_worker)

    p = commands.add_parser("deidentify", help="de-identify unpacked contributions for release",
                            description="For every contribution in IN (as `unpack` writes them): "
                            "OUT/released/<subject>/<study>/<series>/<instance>.dcm for what may be published "
                            "(DICOM PS3.15 Basic Profile, see docs/DEIDENTIFICATION.md), OUT/review/<contribution id>/ "
                            "for what a person must look at first, with report.json and summary.txt. "
                            "Contributions already done are skipped; exits non-zero if any failed.")
    p.add_argument("--in", dest="inp", type=Path, required=True, metavar="IN", help="the unpacked contributions")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="where released/ and review/ go")
    p.add_argument("--secret", type=Path, required=True, metavar="FILE",
                   help="the repository's de-identification secret (made, mode 0600, if missing); "
                   "it keys the new UIDs and subject pseudonyms: keep it, and keep it private")
    p.set_defaults(run=cmd_deidentify)

    p = commands.add_parser("review", help="the operator's review page for what deidentify sent to review",
                            description="Serve the review page for OUT/review/ (as `deidentify` writes it): "
                            "look at each contribution, blank more of an image, accept, reject, release into "
                            "OUT/released/ with a DICOMDIR and a manifest. Every decision is appended to "
                            "OUT/decisions.jsonl. A login token is printed at start unless --password-file is given.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder deidentify wrote")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8001, help="port to listen on (default: 8001)")
    p.add_argument("--password-file", type=Path, metavar="FILE", help="a file holding the password (12 characters or more)")
    p.add_argument("--in", dest="inp", type=Path, metavar="UNPACKED",
                   help="the unpacked originals: documents are then read (OCR) and compared with the patient they name")
    p.set_defaults(run=cmd_review)

    p = commands.add_parser("list", help="show every upload the receiver holds",
                            description="Every upload in DATA, complete or still uploading: its size, "
                            "chunks, the suite it is sealed with (X25519, or the post-quantum "
                            "ML-KEM-768+X25519), when it started and finished. Needs no key.")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="the server's data folder")
    p.set_defaults(run=cmd_list)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
