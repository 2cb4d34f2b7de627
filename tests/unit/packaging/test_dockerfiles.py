"""The Dockerfiles of docker/, read statically: multi-stage, base images pinned (and a build
argument, so `make images` can use a Debian-bootstrapped base), non-root, entry points what the
chart and the operator run, no build tools in the final stage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from support import REPO_ROOT
from support.chart import APP_VERSION, DEFAULTS

DOCKER = REPO_ROOT / "docker"


@dataclass
class Dockerfile:
    """Global ARGs (name → default) and the stages' instructions (keyword, arguments) in order."""

    args: dict[str, str]
    stages: list[list[tuple[str, str]]]

    def stage_name(self, stage: list[tuple[str, str]]) -> str | None:
        words = stage[0][1].split()
        return words[2] if len(words) == 3 and words[1].upper() == "AS" else None

    def base(self, stage: list[tuple[str, str]]) -> str:
        """The FROM of a stage with global ARGs expanded to their defaults."""
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], stage[0][1].split()[0])


def dockerfile(path: Path) -> Dockerfile:
    """Instructions grouped by stage (continuation lines joined); ARGs before the first FROM are global."""
    parsed = Dockerfile({}, [])
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        keyword, args, current = keyword.upper(), args.strip(), ""
        if keyword == "FROM":
            parsed.stages.append([])
        if not parsed.stages:
            assert keyword == "ARG", f"{path.name}: {keyword} before FROM"
            name, _, default = args.partition("=")
            parsed.args[name] = default
            continue
        parsed.stages[-1].append((keyword, args))
    return parsed


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for k, args in stage if k == keyword]


PINNED = re.compile(r"[a-z0-9./-]+:\d+\.\d+\.\d+[-a-z0-9.]*(@sha256:[0-9a-f]{64})?")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|cmake|make|git)\b")
PIP_INSTALL = re.compile(r"pip install[^&;]*")


def test_dockerfiles_are_multi_stage_non_root_and_pinned():
    from conch_api import Model
    from conch_operator import render
    from conch_operator.settings import OperatorSettings

    smollm2 = Model.model_validate({**yaml.safe_load((REPO_ROOT / "examples" / "smollm2-cpu.yaml").read_text()),
                                    "metadata": {"name": "smollm2", "namespace": "default", "uid": "u"}})
    deployment = next(o for o in render.desired_objects(smollm2, OperatorSettings()) if o["kind"] == "Deployment")
    triton_command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    expected = {
        "gateway.Dockerfile": ["python", "-m", "conch_gateway"],
        "operator.Dockerfile": ["python", "-m", "conch_operator"],
        "triton-cpu.Dockerfile": triton_command,  # what the operator runs in the image
    }
    # The engine builder is built on NVIDIA's Triton image instead: test_trtllm_builder_dockerfile.
    assert {p.name for p in DOCKER.glob("*.Dockerfile")} == {*expected, "trtllm-builder.Dockerfile"}
    for name, entrypoint in expected.items():
        parsed = dockerfile(DOCKER / name)
        stages = parsed.stages
        assert len(stages) >= 2, f"{name}: not multi-stage"
        # The base is a build argument whose public default is pinned to a full version; `make images`
        # passes a base bootstrapped from Debian's packages.
        assert PINNED.fullmatch(parsed.args.get("BASE_IMAGE", "")), f"{name}: ARG BASE_IMAGE not pinned"
        names = {parsed.stage_name(s) for s in stages} - {None}
        for stage in stages:
            base = parsed.base(stage)
            # Every stage starts from the base or an earlier stage: the venv built in one is copied
            # into the last, same Python at the same path.
            assert base == parsed.args["BASE_IMAGE"] or base in names, f"{name}: stage on {base}"
        final = stages[-1]
        assert stages[-1][0][1] == "${BASE_IMAGE}", f"{name}: the final stage is not on the base"
        assert args_of(final, "USER") in (["10001"], ["10001:10001"]), f"{name}: final USER"
        assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == entrypoint, name
        for run in args_of(final, "RUN"):
            assert not BUILD_TOOLS.search(run.replace("libstdc++6", "")), f"{name}: build tools in the final stage: {run}"
            for pip in PIP_INSTALL.findall(run):  # only the project's own wheel, from the build stage
                assert "--no-index" in pip and "--no-deps" in pip, f"{name}: pip fetches in the final stage: {run}"
        for stage in stages:
            for copy in args_of(stage, "COPY"):
                if "--from=" in copy:
                    continue
                for source in copy.split()[:-1]:
                    assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    triton = dockerfile(DOCKER / "triton-cpu.Dockerfile")
    # llama.cpp's wheel: compiled in a stage of its own unless `make images` passes the venv's.
    assert triton.args["LLAMA_CPP_WHEELS"] in {triton.stage_name(s) for s in triton.stages}
    gguf = smollm2.spec.source.file.path
    text = (DOCKER / "triton-cpu.Dockerfile").read_text()
    assert f"{gguf} \\" in text or f"{gguf}\n" in text, "the GGUF examples/smollm2-cpu.yaml names"
    registry = DEFAULTS["image"]["registry"]
    assert OperatorSettings.model_fields["cpu_triton_image"].default == \
        f"{registry}/{DEFAULTS['operator']['tritonImage']['repository']}:{APP_VERSION}"
    for image, dockerfile_name in (("conch-gateway", "gateway"), ("conch-operator", "operator"), ("triton-cpu", "triton-cpu")):
        assert f"-t {registry}/{image}:{APP_VERSION} ." in (DOCKER / f"{dockerfile_name}.Dockerfile").read_text()


def test_trtllm_builder_dockerfile():
    """The build Job's image: on the very Triton image that serves the engines (an engine only loads
    in the TensorRT-LLM that built it), non-root as the operator's pods, entry point the builder,
    and tagged as the operator's default."""
    from conch_engines.tensorrt_llm import TRITON_TRTLLM_IMAGE
    from conch_operator.settings import OperatorSettings

    path = DOCKER / "trtllm-builder.Dockerfile"
    text = path.read_text()
    parsed = dockerfile(path)
    assert parsed.args["TRITON_IMAGE"] == TRITON_TRTLLM_IMAGE
    assert all(parsed.base(stage) == TRITON_TRTLLM_IMAGE for stage in parsed.stages)
    final = parsed.stages[-1]
    assert args_of(final, "USER") == ["1000:1000"]
    assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == ["python3", "-m", "conch_engines.tensorrt_llm.builder"]
    for copy in args_of(final, "COPY"):
        if "--from=" not in copy:
            assert all((REPO_ROOT / source).exists() for source in copy.split()[:-1]), copy
    assert f"-t {OperatorSettings().trtllm_builder_image} ." in text


def test_node_images():
    """The local node's own images (cluster/images): pause built from source, Traefik from its
    binary; both from scratch, non-root."""
    for name in ("pause", "traefik"):
        parsed = dockerfile(REPO_ROOT / "cluster" / "images" / f"{name}.Dockerfile")
        (stage,) = parsed.stages
        assert parsed.base(stage) == "scratch"
        assert args_of(stage, "USER")[0].split(":")[0] not in ("0", "root")
