"""``reactor simulate-supermq`` serves SuperMQ's APIs until SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import REPO
from tests.servers import free_port


def test_simulate_supermq_serves_until_sigterm() -> None:
    base = free_port(block=5)  # users, things, bootstrap, certs, http
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "simulate-supermq", "--port-base", str(base), "--seed"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bootstrap = f"http://127.0.0.1:{base + 2}"  # users, things, bootstrap, certs, http
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{bootstrap}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = httpx.post(
            f"http://127.0.0.1:{base}/users/tokens/issue",
            json={"identity": "admin@example.com", "secret": "12345678"},
        ).json()["access_token"]
        configs = httpx.get(
            f"{bootstrap}/things/configs", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert configs["total"] == 1  # --seed: the demo's device
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "bootstrap" in out


def test_simulate_supermq_plays_supermq_head() -> None:
    base = free_port(block=6)  # users, clients, channels, bootstrap, certs, http
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reactor",
            "simulate-supermq",
            "--profile",
            "clients",
            "--port-base",
            str(base),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bootstrap = f"http://127.0.0.1:{base + 3}"
        deadline = time.monotonic() + 20
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{bootstrap}/health")
                if answer.status_code == 200:
                    health = answer.json()
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health["version"] == "v0.19.1"
        login = httpx.post(
            f"http://127.0.0.1:{base}/users/tokens/issue",
            json={"username": "admin@example.com", "password": "12345678"},
        )
        assert login.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "SuperMQ HEAD" in out
    assert "channels" in out
    assert "domain_id" in out
