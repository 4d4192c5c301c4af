"""Before a download of pretrained weights: is it needed, and can it reach its host?

timm's downloader retries for minutes when there is no network; this answers in seconds:
weights already in the Hugging Face cache need no network, otherwise a TCP connection to
the host the download would open first (the HTTPS proxy if one is set) is tried with a
timeout. Private: :func:`vitlearn.pretrained.load_timm_pretrained` turns the answer into
its error.
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse


def weights_host(pretrained_cfg: dict) -> tuple[str, int]:
    """(host, port) that the download of these weights connects to first (a proxy if one is set)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or proxy, p.port or 80
    if pretrained_cfg.get("hf_hub_id"):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        p = urlparse(endpoint)
        return p.hostname or "huggingface.co", p.port or 443
    p = urlparse(pretrained_cfg.get("url") or "https://huggingface.co")
    return p.hostname or "huggingface.co", p.port or 443


def reachable(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to host:port opens within ``timeout`` s, else why not.

    The probe runs in a daemon thread so that a name lookup that hangs (a resolver with no
    network can wait far longer than ``timeout``) cannot hold the caller up either."""
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = ""
        except OSError as err:
            outcome["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return None
    return outcome.get("error", f"no answer within {timeout:g} s")


def cached(pretrained_cfg: dict) -> bool:
    """Whether timm's Hugging Face download of these weights is already in the local cache."""
    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache  # optional: comes with timm
    except ImportError:
        return False
    repo, _, revision = repo.partition("@")
    for filename in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(path, str):
            return True
    return False


def why_not_downloadable(pretrained_cfg: dict, *, local_file: bool, timeout: float) -> str | None:
    """None when the weights can be had (a local file, the cache, or a reachable host); else
    "host:port is not reachable within t s (why)"."""
    if local_file or pretrained_cfg.get("file") or cached(pretrained_cfg):
        return None
    host, port = weights_host(pretrained_cfg)
    why = reachable(host, port, timeout)
    if why is None:
        return None
    return f"{host}:{port} is not reachable within {timeout:g} s ({why})"
