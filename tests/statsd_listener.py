"""A StatsD receiver for the tests: a UDP socket on 127.0.0.1 that keeps every datagram a real
Airflow sends to it, so a test can show what statsd-exporter would make of each
(tests/statsd_mapping.py).

A thread reads the socket while Airflow runs: a DAG run sends hundreds of datagrams, and the
kernel's receive buffer alone would drop most of them. Reading costs next to nothing (the thread
waits in recv with the interpreter lock released)."""

from __future__ import annotations

import socket
import threading

HOST = "127.0.0.1"
# Airflow's default [metrics] statsd_prefix, set explicitly so the mapping's `airflow.` is certain.
PREFIX = "airflow"


class StatsdListener:
    """Bound when made (so its port can go into an environment built before anything runs);
    records from start() until stop()."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((HOST, 0))
        self._socket.settimeout(0.2)
        self._datagrams: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-listener", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def airflow_env(self) -> dict[str, str]:
        """Airflow's [metrics] settings that send its StatsD metrics here."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": HOST,
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": PREFIX,
        }

    def start(self) -> None:
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self._socket.recv(65535)
            except TimeoutError:
                if self._stopping.is_set():
                    return
                continue
            except OSError:  # closed under us
                return
            self._datagrams.append(data.decode("utf-8", errors="replace"))

    def datagrams(self) -> tuple[str, ...]:
        """What arrived so far, in order (a datagram may hold several newline-separated lines)."""
        return tuple(self._datagrams)

    def stop(self) -> tuple[str, ...]:
        """Stops once the socket has been quiet for a moment (a datagram sent just before is
        still read), and returns every datagram received."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()
        return self.datagrams()
