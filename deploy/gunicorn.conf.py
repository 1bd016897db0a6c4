"""gunicorn settings for the registration service: ``gunicorn -c deploy/gunicorn.conf.py``.

Every value can be overridden on the command line or with ``GUNICORN_CMD_ARGS``; the few read
from the environment here are the ones that differ between hosts.
"""

import multiprocessing
import os

#: The application factory; ``REGISTRATION_CONFIG`` (default production) picks the settings.
wsgi_app = "registration:create_app()"

#: Only the reverse proxy talks to gunicorn.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

#: Threaded workers, one process per core with 8 threads each (docs/deploy.md, "gunicorn"):
#: a sign-up spends most of its time waiting (for its event's lock, which every sign-up for the
#: event queues for, and for PostgreSQL), and a thread that waits lets another request of the
#: same process use the CPU; sync workers would leave their process idle during the wait, and
#: they close every connection after one request. Measured with bench/load_test.py.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", 8))
worker_class = "gthread"
timeout = 30
graceful_timeout = 30
#: Seconds a connection from the proxy is kept open for its next request.
keepalive = 5

#: Recycle workers now and then (a slow leak in a library never grows without bound), but
#: rarely: a new worker imports the app and starts with cold caches (rendered pages, compiled
#: statements). At 2,000 requests a worker was replaced about every 15 seconds during a
#: sign-up rush of 250 per second, and a load-test round with a replacement (probably) lost
#: most of its event-page rate.
max_requests = 10000
max_requests_jitter = 1000

#: The app writes one JSON line per request (without the secret tokens in personal links);
#: gunicorn's access log would print the raw URL, tokens included, so it stays off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

#: Which proxy headers to trust is the app's setting (PROXY_FIX_X_PROTO, ...), in one place:
#: gunicorn's own X-Forwarded-Proto handling is switched off so it cannot disagree.
secure_scheme_headers: dict[str, str] = {}

#: Each worker builds its own app (and database pool): no connection is ever shared by a fork.
preload_app = False

#: gunicorn 24+ opens a control socket under $HOME or $XDG_RUNTIME_DIR; the service user's home
#: is read-only under systemd (ProtectSystem=strict) and systemctl does the controlling.
control_socket_disable = True
