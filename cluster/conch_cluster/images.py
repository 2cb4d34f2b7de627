"""Container images built on this machine (``make images``, ``python -m conch_cluster images``):
Conch's gateway, operator and CPU Triton images from docker/, and the local node's pause and
Traefik images, with podman + runc — no registry involved.

- The base image is bootstrapped from Debian's packages (mmdebstrap), standing in for the public
  default of the Dockerfiles (python:3.11-slim-bookworm), which would come from a registry.
- The CPU Triton image gets the llama-cpp-python wheel the project's own virtualenv was installed
  from (the Makefile's pip cache), so llama.cpp is not compiled a second time.
- Every image is tagged ``<version>-<commit>`` (``-dirty.<content hash>`` when the working tree
  differs from the commit) and ``<version>``; podman's layer cache makes an unchanged image a no-op.
- Each image is exported once per image ID as an archive the node's containerd imports;
  ``images.json`` in the cache lists refs, IDs, archives and sizes.

Builds run as root with runc, host networking, the host's CA bundle (registries sit behind a
TLS-inspecting proxy here) and rlimits no higher than the current ones (raising one needs
CAP_SYS_RESOURCE, which containers on this machine lack).
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ClusterError
from .toolchain import bin_dir, cache_root

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "ghcr.io/conch-dev"
LOCAL = "conch.local"
BASE_SUITE = "bookworm"
# What the Dockerfiles need of a base: Python 3.11 with venv, `python` on PATH, libpython (the
# Triton Python backend stub links it), CA certificates, apt (runtime stages install libraries).
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "libpython3.11", "ca-certificates")
DEBIAN_MIRRORS = ("deb http://deb.debian.org/debian bookworm main",
                  "deb http://deb.debian.org/debian bookworm-updates main",
                  "deb http://deb.debian.org/debian-security bookworm-security main")
# Inputs of the Conch images (the Dockerfiles' COPY sources and the Dockerfiles themselves).
CONCH_INPUTS = ("docker", "gateway", "engines", "crds", "operator", "pyproject.toml", "README.md")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PAUSE_VERSION = "3.10"


@dataclass(frozen=True)
class Image:
    name: str  # repository name, e.g. conch-gateway
    dockerfile: str  # relative to the repository
    conch: bool = True  # one of Conch's own images (tagged with the project's version/commit)


CONCH_IMAGES = (
    Image("conch-operator", "docker/operator.Dockerfile"),
    Image("conch-gateway", "docker/gateway.Dockerfile"),
    Image("triton-cpu", "docker/triton-cpu.Dockerfile"),
)
NODE_IMAGES = (
    Image("pause", "cluster/images/pause.Dockerfile", conch=False),
    Image("traefik", "cluster/images/traefik.Dockerfile", conch=False),
)


def images_dir() -> Path:
    return cache_root() / "images"


def manifest_path() -> Path:
    return images_dir() / "images.json"


def log(message: str) -> None:
    print(f"[conch] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- tags


def project_version(repo: Path = REPO) -> str:
    import tomllib

    return tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False).stdout.strip()


def content_hash(repo: Path = REPO, paths: tuple[str, ...] = CONCH_INPUTS) -> str:
    """sha256 over the files git would see under ``paths`` (tracked and untracked, ignored ones left
    out), names and contents."""
    listed = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths)
    digest = hashlib.sha256()
    for name in sorted(set(filter(None, listed.split("\0")))):
        path = repo / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def conch_tag(repo: Path = REPO) -> str:
    """``<version>-<commit>``, plus ``-dirty.<hash>`` when the images' inputs differ from the commit."""
    version = project_version(repo)
    commit = _git(repo, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return f"{version}-nogit.{content_hash(repo)[:12]}"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=normal", "--", *CONCH_INPUTS)
    return f"{version}-{commit}" + (f"-dirty.{content_hash(repo)[:12]}" if dirty else "")


def ref(image: Image, tag: str) -> str:
    return f"{REGISTRY}/{image.name}:{tag}" if image.conch else f"{LOCAL}/{image.name}:{tag}"


# ---------------------------------------------------------------------------------------------- podman


def podman_argv(*args: str) -> list[str]:
    """podman with its own storage in the project's cache (kept between runs like the Go builds),
    runc (crun cannot handle this machine's hybrid cgroups) and no systemd/journald."""
    storage = cache_root() / "podman"
    return ["podman", "--root", str(storage / "storage"), "--runroot", "/run/conch/podman", "--runtime", "runc",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay", *args]


def podman(*args: str, capture: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    argv = podman_argv(*args)
    proc = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout, check=False,
                          stdout=None if capture else sys.stderr)
    if proc.returncode:
        detail = (proc.stderr or "")[-3000:] if capture else "(see the output above)"
        raise ClusterError(f"podman {' '.join(args[:3])} … failed ({proc.returncode}): {detail}")
    return proc


def exists(image_ref: str) -> bool:
    return subprocess.run(podman_argv("image", "exists", image_ref), check=False).returncode == 0


def image_id(image_ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", image_ref).stdout.strip()


def image_size(image_ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image_ref).stdout.strip())


def require_tools() -> None:
    missing = [t for t in ("podman", "runc", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        raise ClusterError(f"building images needs {', '.join(missing)}: run `make tools`")
    if os.geteuid() != 0:
        raise ClusterError("building images needs root (podman with runc, as on this machine)")


@contextmanager
def build_context() -> Iterator[list[str]]:
    """The flags every RUN of a build gets: host network, the host's CA bundle and pip settings
    (for the TLS-inspecting proxy), rlimits at or below the current ones."""
    with tempfile.TemporaryDirectory(prefix="conch-build-") as tmp:
        pip_conf = Path(tmp) / "pip.conf"
        pip_conf.write_text(_pip_config())
        flags = ["--network", "host", "--pull=never", "--layers",
                 "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "-v", f"{pip_conf}:/etc/pip.conf:ro"]
        if CA_BUNDLE.is_file():
            flags += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        yield flags


def _pip_config() -> str:
    """The host's index settings for pip inside builds, with the mounted CA bundle."""
    config = configparser.ConfigParser()
    host = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                          check=False).stdout
    settings = {"cert": str(CA_BUNDLE)} if CA_BUNDLE.is_file() else {}
    for line in host.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        if name in ("index-url", "extra-index-url", "trusted-host", "timeout", "retries"):
            settings[name] = value.strip().strip("'")
    for env, name in (("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
                      ("PIP_DEFAULT_TIMEOUT", "timeout")):
        if os.environ.get(env):
            settings[name] = os.environ[env]
    config["global"] = settings
    with tempfile.TemporaryFile("w+") as out:
        config.write(out)
        out.seek(0)
        return out.read()


# ---------------------------------------------------------------------------------------------- the builds


def base_image() -> str:
    """A Debian bookworm rootfs with Python (mmdebstrap, from Debian's packages) as a podman image;
    its tag names what it was made from, so it is made once."""
    key = hashlib.sha256(json.dumps([BASE_SUITE, BASE_PACKAGES, DEBIAN_MIRRORS]).encode()).hexdigest()[:12]
    base = f"{LOCAL}/base/python:3.11-{BASE_SUITE}-{key}"
    if exists(base):
        return base
    log(f"bootstrapping {base} from Debian packages (mmdebstrap)…")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conch-rootfs-", dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                "--aptopt=Acquire::Check-Valid-Until \"false\"",
                # Documentation and translations are of no use in an image.
                "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
                BASE_SUITE, str(rootfs), *DEBIAN_MIRRORS]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise ClusterError(f"mmdebstrap failed: {proc.stderr[-3000:]}")
        podman("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "--change", "CMD [\"python3\"]", str(rootfs), base)
    log(f"{base} ready in {time.monotonic() - t0:.0f}s")
    return base


def llama_cpp_wheels_image() -> str | None:
    """An image holding (in /wheels) the llama-cpp-python wheel the virtualenv was installed from,
    found in the project's pip cache; None when it is not there (the Dockerfile then compiles)."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None
    cache = Path(os.environ.get("PIP_CACHE_DIR") or cache_root() / "pip")
    wheels = sorted(cache.glob(f"wheels/**/llama_cpp_python-{version}-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        return None
    wheel = wheels[-1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
    name = f"{LOCAL}/wheels/llama-cpp-python:{version}-{digest}"
    if not exists(name):
        with tempfile.TemporaryDirectory(prefix="conch-wheels-") as tmp:
            shutil.copy(wheel, tmp)
            Path(tmp, "Containerfile").write_text(f"FROM scratch\nCOPY {wheel.name} /wheels/\n")
            podman("build", "--pull=never", "-t", name, "-f", str(Path(tmp, "Containerfile")), tmp)
    return name


def build_conch_image(repo: Path, image: Image, tag: str, base: str, wheels: str | None, flags: list[str]) -> None:
    version = project_version(repo)
    args = ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"VERSION={version}"]
    if image.name == "triton-cpu" and wheels:
        args += ["--build-arg", f"LLAMA_CPP_WHEELS={wheels}"]
    podman("build", *flags, *args, "-f", str(repo / image.dockerfile), "-t", ref(image, tag),
           "-t", ref(image, version), str(repo), capture=False)


def build_node_images(flags: list[str]) -> dict[str, str]:
    """pause (compiled here, static) and Traefik (the binary build-tools.sh made): name → ref."""
    refs = {}
    bins = bin_dir()
    with tempfile.TemporaryDirectory(prefix="conch-node-images-") as tmp:
        pause_ctx, traefik_ctx = Path(tmp, "pause"), Path(tmp, "traefik")
        pause_ctx.mkdir()
        traefik_ctx.mkdir()
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise ClusterError("building the pause image needs gcc (build-essential)")
        subprocess.run([cc, "-static", "-Os", "-s", "-o", str(pause_ctx / "pause"),
                        str(REPO / "cluster" / "images" / "pause.c")], check=True)
        traefik = bins / "traefik"
        if not traefik.is_file():
            raise ClusterError(f"{traefik} is missing: run `make tools`")
        shutil.copy(traefik, traefik_ctx / "traefik")
        traefik_version = (bins / ".traefik.version").read_text().strip()
        for image, context, tag in ((NODE_IMAGES[0], pause_ctx, PAUSE_VERSION),
                                    (NODE_IMAGES[1], traefik_ctx, traefik_version)):
            podman("build", "--pull=never", "--layers", "-f", str(REPO / image.dockerfile), "-t", ref(image, tag),
                   str(context))
            refs[image.name] = ref(image, tag)
    return refs


def export(name: str, image_ref: str, extra_refs: list[str]) -> dict:
    """The image as a docker-archive the node's containerd imports, once per image ID and names:
    an archive carries the tags it was saved with, and a commit that leaves an image unchanged
    (same ID) still needs its new tag on the node, or pods asking for it fail to pull."""
    identity = image_id(image_ref)
    key = hashlib.sha256("\n".join([identity, image_ref, *extra_refs]).encode()).hexdigest()[:16]
    archive = images_dir() / "archives" / f"{name}-{key}.tar"
    if not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        podman("save", "--format", "docker-archive", "-m", "-o", str(partial), image_ref, *extra_refs)
        partial.replace(archive)
    return {"ref": image_ref, "refs": [image_ref, *extra_refs], "id": identity, "archive": str(archive),
            "bytes": image_size(image_ref), "archive_bytes": archive.stat().st_size}


@contextmanager
def _locked() -> Iterator[None]:
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure(*, repo: Path = REPO, manifest_file: Path | None = None) -> dict:
    """Builds what is missing or stale and returns the manifest (also written to ``manifest_file``,
    images.json in the cache by default). Cheap when nothing changed: podman reuses every layer and
    the archives are kept per image ID. ``repo``: another checkout's Dockerfiles and sources."""
    require_tools()
    manifest_file = manifest_file or manifest_path()
    with _locked():
        t0 = time.monotonic()
        tag = conch_tag(repo)
        version = project_version(repo)
        manifest = {"tag": tag, "version": version, "repository": str(repo), "images": {}}
        with build_context() as flags:
            base = base_image()
            wheels = llama_cpp_wheels_image()
            if wheels is None:
                log("no llama-cpp-python wheel in the project's pip cache: the image compiles llama.cpp")
            for image in CONCH_IMAGES:
                if not exists(ref(image, tag)):
                    log(f"building {ref(image, tag)}…")
                    build_conch_image(repo, image, tag, base, wheels, flags)
                manifest["images"][image.name] = export(image.name, ref(image, tag), [ref(image, version)])
            for name, node_ref in build_node_images(flags).items():
                manifest["images"][name] = export(name, node_ref, [])
        manifest["seconds"] = round(time.monotonic() - t0, 1)
        tmp = manifest_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(manifest_file)
        return manifest


def prune(keep_tag: str) -> None:
    """Removes Conch images of other tags than ``keep_tag`` and the version tag, and archives no
    manifest in the cache refers to. Untagged layers stay: they are the build cache."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={REGISTRY}/*").stdout
    keep = {keep_tag, project_version()}
    old = [r for r in listed.split() if r.rsplit(":", 1)[-1] not in keep]
    if old:
        podman("rmi", "--ignore", *old)
    referenced = set()
    for manifest in images_dir().glob("*.json"):
        try:
            referenced |= {i["archive"] for i in json.loads(manifest.read_text())["images"].values()}
        except (OSError, ValueError, KeyError):
            continue
    for archive in (images_dir() / "archives").glob("*.tar"):
        if str(archive) not in referenced:
            archive.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conch_cluster images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-prune", action="store_true", help="keep images of older tags")
    args = parser.parse_args(argv)
    manifest = ensure()
    if not args.no_prune:
        prune(manifest["tag"])
    for name, entry in manifest["images"].items():
        log(f"{entry['ref']}  {entry['bytes'] / 1e6:.0f} MB")
    log(f"images ready in {manifest['seconds']}s (manifest: {manifest_path()})")
    print(manifest["tag"])
    return 0
